import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  createPigpioModule,
  type PigpioDeps,
  pigpioDriver,
  pigpioLockHolder,
  pigpioPackageProblem,
} from "../../src/drivers/pigpio.js";
import { FakePigpio } from "../helpers/fake-pigpio.js";
import {
  buildTree,
  LAPTOP,
  PI3_KERNEL_61,
  PI4_KERNEL_66,
  PI5_KERNEL_612,
  removeTree,
  type TreeSpec,
} from "../helpers/fake-sysfs.js";
import { driverSuite, optionsFor, type Rig } from "./driver-suite.js";

function deps(fake: FakePigpio, overrides: Partial<PigpioDeps> = {}): Partial<PigpioDeps> {
  return {
    load: async () => fake,
    packageProblem: () => null,
    getuid: () => 0,
    lockHolder: () => null,
    proc: new EventEmitter() as unknown as PigpioDeps["proc"],
    ...overrides,
  };
}

function pigpioRig(spec: TreeSpec): Rig & { fake: FakePigpio } {
  const root = buildTree(spec);
  const fake = new FakePigpio();
  return {
    fake,
    module: createPigpioModule(deps(fake)),
    sysfsRoot: root,
    darkOnClose: true,
    seen: (pin, activeLow) =>
      (fake.history.get(pin) ?? []).map((high) => Math.round((activeLow ? 1 - high : high) * 1e6) / 1e6),
    released: () => !fake.initialised && fake.terminations === 1,
    dispose: () => removeTree(root),
  };
}

driverSuite(
  "pigpio (fake module), Pi 4",
  () => pigpioRig(PI4_KERNEL_66),
  [
    { label: "RGB on LAMPI's pins 19, 26, 13", pins: [19, 26, 13] },
    { label: "mono on 18 (hardware PWM)", pins: [18] },
  ],
  { dimmable: true },
);

driverSuite(
  "pigpio (fake module), Pi 3",
  () => pigpioRig(PI3_KERNEL_61),
  [{ label: "mono on 17", pins: [17] }],
  {
    dimmable: true,
  },
);

describe("pigpio specifics", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  const rig = (spec: TreeSpec) => {
    const r = pigpioRig(spec);
    cleanups.push(() => removeTree(r.sysfsRoot));
    return r;
  };

  it("configures before initialising: 2 µs PCM clock, socket and pipe interfaces off, one initialise", async () => {
    const r = rig(PI4_KERNEL_66);
    const driver = r.module.create(optionsFor(r, [19, 26, 13], false));
    await driver.open([0.5, 0.5, 0.5]);
    expect(r.fake.sampleRate).toBe(2);
    expect(r.fake.peripheral).toBe(r.fake.CLOCK_PCM);
    expect(r.fake.interfaces & r.fake.DISABLE_SOCK_IF).toBeTruthy();
    expect(r.fake.interfaces & r.fake.DISABLE_FIFO_IF).toBeTruthy();
    expect(r.fake.initialisations).toBe(1);
    await driver.close();
    expect(r.fake.terminations).toBe(1);
    expect(r.fake.initialised).toBe(false);
  });

  it("uses hardware PWM for the first pin of each hardware channel and DMA PWM at the real range elsewhere", async () => {
    const r = rig(PI4_KERNEL_66);
    const driver = r.module.create(optionsFor(r, [19, 26, 13], false));
    await driver.open([0.3, 0.3, 0.3]);
    // 19 and 13 share hardware channel 1: 19 gets it, 13 gets DMA PWM.
    expect(r.fake.calls).toContain("gpioHardwarePWM(19)");
    expect(r.fake.calls).not.toContain("gpioHardwarePWM(13)");
    expect(r.fake.calls).toContain("gpioPWM(13)");
    expect(r.fake.calls).toContain("gpioPWM(26)");
    // 1 kHz at 2 µs is 500 real steps: 0.3 is exactly 150 of them.
    expect(r.fake.history.get(26)).toEqual([0.3]);
    await driver.close();
  });

  it("the dimmest lit setting is one step, never dark", async () => {
    const r = rig(PI4_KERNEL_66);
    const driver = r.module.create(optionsFor(r, [26], false));
    await driver.open([0.0001]);
    expect(r.fake.history.get(26)).toEqual([1 / 500]);
    await driver.close();
  });

  it("the fake holds pigpio's rules: no use after terminate, range 25..40000, hardware PWM pins only", () => {
    const fake = new FakePigpio();
    const gpio = new fake.Gpio(26);
    expect(() => gpio.pwmRange(24)).toThrow("pigpio error -21 in gpioSetPWMrange");
    expect(() => gpio.pwmRange(40001)).toThrow("pigpio error -21 in gpioSetPWMrange");
    expect(() => gpio.pwmWrite(256)).toThrow("pigpio error -8 in gpioPWM");
    expect(() => gpio.hardwarePwmWrite(1000, 1)).toThrow("pigpio error -95 in gpioHardwarePWM");
    expect(() => fake.configureClock(2, fake.CLOCK_PCM)).toThrow("pigpio error -32 in gpioCfgClock");
    fake.terminate();
    expect(() => gpio.pwmWrite(1)).toThrow("pigpio error -31 in gpioPWM");
    expect(() => new fake.Gpio(26)).toThrow(/gpioInitialise/);
  });

  it("an initialise failure (pigpiod running, not root) is unavailable and leaves nothing behind", async () => {
    const r = rig(PI4_KERNEL_66);
    r.fake.failInitialise = true;
    const driver = r.module.create(optionsFor(r, [18], false));
    await expect(driver.open([0])).rejects.toMatchObject({
      code: "unavailable",
      message: /initialisation failed/,
    });
    expect(r.fake.initialised).toBe(false);
  });

  it("re-registers the agent's signal listeners after pigpio initialises, in order", async () => {
    const r = rig(PI4_KERNEL_66);
    const proc = new EventEmitter();
    const first = () => {};
    const second = () => {};
    proc.on("SIGTERM", first);
    proc.on("SIGTERM", second);
    const removed: string[] = [];
    proc.on("removeListener", (event: string) => removed.push(event));
    const driver = createPigpioModule(deps(r.fake, { proc: proc as unknown as PigpioDeps["proc"] })).create(
      optionsFor(r, [18], false),
    );
    await driver.open([0]);
    expect(removed).toEqual(["SIGTERM", "SIGTERM"]);
    expect(proc.listeners("SIGTERM")).toEqual([first, second]);
    await driver.close();
  });

  it("probe explains itself: laptop, Pi 5, package, root, pigpiod", async () => {
    const fake = new FakePigpio();
    const probe = (spec: TreeSpec, overrides: Partial<PigpioDeps> = {}) => {
      const r = rig(spec);
      return {
        r,
        result: createPigpioModule(deps(fake, overrides)).probe(optionsFor(r, [19, 26, 13], false)),
      };
    };
    const laptop = probe(LAPTOP);
    expect(await laptop.result).toEqual({
      ok: false,
      reason: `pigpio: not a Raspberry Pi (no ${laptop.r.sysfsRoot}/firmware/devicetree/base/model)`,
    });
    expect(await probe(PI5_KERNEL_612).result).toEqual({
      ok: false,
      reason:
        "pigpio: the Raspberry Pi 5 Model B Rev 1.0 is not supported by pigpio (joan2937/pigpio#589); use GPIO_DRIVER=sysfs-pwm",
    });
    const notRoot = await probe(PI4_KERNEL_66, { getuid: () => 1000 }).result;
    expect(!notRoot.ok && notRoot.reason).toMatch(/^pigpio: needs root/);
    const locked = await probe(PI4_KERNEL_66, { lockHolder: () => 4242 }).result;
    expect(!locked.ok && locked.reason).toBe(
      "pigpio: pigpiod (pid 4242) is running and holds /var/run/pigpio.pid; stop it with `sudo systemctl disable --now pigpiod`, or use GPIO_DRIVER=sysfs-pwm",
    );
    const unbuilt = await probe(PI4_KERNEL_66, {
      packageProblem: () => "pigpio: its native addon was never built",
    }).result;
    expect(unbuilt).toEqual({ ok: false, reason: "pigpio: its native addon was never built" });
    expect(await probe(PI4_KERNEL_66).result).toMatchObject({ ok: true });
  });

  it("the default module on a laptop says it is not a Pi before touching the package", async () => {
    const r = rig(LAPTOP);
    const result = await pigpioDriver.probe(optionsFor(r, [18], false));
    expect(!result.ok && result.reason).toMatch(/^pigpio: not a Raspberry Pi/);
  });

  it("tells a missing package from an unbuilt addon from an addon without the C library", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-pigpio-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, "package.json"), "{}");
    const resolve = () => path.join(dir, "package.json");
    expect(
      pigpioPackageProblem(() => {
        throw new Error("Cannot find module");
      }),
    ).toMatch(
      /^pigpio: the optional package is not installed: run `npm install pigpio`, then run `npm install-scripts approve pigpio && npm rebuild pigpio`/,
    );
    expect(pigpioPackageProblem(resolve)).toMatch(
      /^pigpio: its native addon was never built: run `npm install-scripts approve pigpio && npm rebuild pigpio`/,
    );
    mkdirSync(path.join(dir, "build", "Release"), { recursive: true });
    writeFileSync(path.join(dir, "build", "Release", "pigpio.node"), "not an ELF file");
    expect(pigpioPackageProblem(resolve)).toMatch(/^pigpio: its native addon does not load/);
  });

  it("reads pigpio's lock file: a live pid holds it, a stale or own one does not", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-pigpio-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "pigpio.pid");
    expect(pigpioLockHolder(file)).toBeNull();
    writeFileSync(file, `${process.ppid}\n`);
    expect(pigpioLockHolder(file)).toBe(process.ppid);
    writeFileSync(file, `${process.pid}\n`);
    expect(pigpioLockHolder(file)).toBeNull();
    writeFileSync(file, "2147483646\n");
    expect(pigpioLockHolder(file)).toBeNull();
  });
});
