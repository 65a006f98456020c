import { afterEach, describe, expect, it } from "vitest";
import { DriverError } from "../../src/drivers/driver.js";
import { findPinctrlChip, sysfsGpioNumber } from "../../src/drivers/gpiochip.js";
import { createOnoffModule, onoffDriver, onoffLoadProblem } from "../../src/drivers/onoff.js";
import { nodeSysfs } from "../../src/drivers/sysfs.js";
import { FakeOnoff } from "../helpers/fake-onoff.js";
import {
  buildTree,
  LAPTOP,
  PI3_KERNEL_61,
  PI4_KERNEL_61,
  PI4_KERNEL_66,
  PI5_KERNEL_612,
  removeTree,
  type TreeSpec,
} from "../helpers/fake-sysfs.js";
import { driverSuite, optionsFor, type Rig } from "./driver-suite.js";

function onoffRig(spec: TreeSpec): Rig & { onoff: FakeOnoff } {
  const root = buildTree(spec);
  const onoff = new FakeOnoff(spec.gpioChips ?? []);
  const base = (spec.gpioChips ?? []).find((c) => c.label.startsWith("pinctrl-"))?.base ?? 0;
  return {
    onoff,
    module: createOnoffModule({ load: async () => onoff }),
    sysfsRoot: root,
    darkOnClose: true,
    // The fake records raw levels; an active-low LED is lit when its pin is low.
    seen: (pin, activeLow) => (onoff.history.get(base + pin) ?? []).map((raw) => (activeLow ? 1 - raw : raw)),
    released: (pins) =>
      pins.every((pin) => onoff.unexported.includes(base + pin) && !onoff.exported.has(base + pin)),
    dispose: () => removeTree(root),
  };
}

const RGB = { label: "RGB on LAMPI's pins 19, 26, 13", pins: [19, 26, 13] };
driverSuite("onoff, Pi 4 on 6.1 (base 0)", () => onoffRig(PI4_KERNEL_61), [RGB], { dimmable: false });
driverSuite("onoff, Pi 4 on 6.6 (base 512)", () => onoffRig(PI4_KERNEL_66), [RGB], { dimmable: false });
driverSuite(
  "onoff, Pi 5 on 6.12 (base 571)",
  () => onoffRig(PI5_KERNEL_612),
  [{ label: "relay on 17", pins: [17] }],
  {
    dimmable: false,
  },
);

describe("onoff specifics", () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) removeTree(root);
  });
  const tree = (spec: TreeSpec) => {
    const root = buildTree(spec);
    roots.push(root);
    return root;
  };

  it("finds the header pins' gpiochip by its pinctrl label, not the expander or brcmstb chips", async () => {
    const numbers = async (spec: TreeSpec) => {
      const chip = await findPinctrlChip(tree(spec), nodeSysfs);
      return chip && { label: chip.label, gpio19: sysfsGpioNumber(chip, 19) };
    };
    expect(await numbers(PI3_KERNEL_61)).toEqual({ label: "pinctrl-bcm2835", gpio19: 19 });
    expect(await numbers(PI4_KERNEL_61)).toEqual({ label: "pinctrl-bcm2711", gpio19: 19 });
    expect(await numbers(PI4_KERNEL_66)).toEqual({ label: "pinctrl-bcm2711", gpio19: 531 });
    expect(await numbers(PI5_KERNEL_612)).toEqual({ label: "pinctrl-rp1", gpio19: 590 });
    expect(await numbers(LAPTOP)).toBeNull();
  });

  it("the fake onoff refuses the hard-coded number on 6.6, as the kernel does (fivdi/onoff#200)", () => {
    const onoff = new FakeOnoff(PI4_KERNEL_66.gpioChips ?? []);
    expect(() => new onoff.Gpio(19, "low", { activeLow: false })).toThrow(/EINVAL/);
  });

  it("starts an active-low pin at its raw level: lit means low, dark means high", async () => {
    const root = tree(PI4_KERNEL_66);
    const onoff = new FakeOnoff(PI4_KERNEL_66.gpioChips ?? []);
    const driver = createOnoffModule({ load: async () => onoff }).create({
      ...optionsFor({ sysfsRoot: root } as Rig, [19, 26], true),
    });
    await driver.open([1, 0]);
    expect(onoff.history.get(531)).toEqual([0]);
    expect(onoff.history.get(538)).toEqual([1]);
    expect(onoff.exported.get(531)).toEqual({ activeLow: true });
    await driver.close();
  });

  it("probe explains itself: laptop, no gpiochip, a pin the chip does not have, a package that does not load", async () => {
    const laptop = tree(LAPTOP);
    expect(await onoffDriver.probe(optionsFor({ sysfsRoot: laptop } as Rig, [19], false))).toEqual({
      ok: false,
      reason: `onoff: not a Raspberry Pi (no ${laptop}/firmware/devicetree/base/model)`,
    });
    const noChips = tree({ ...PI4_KERNEL_66, gpioChips: [] });
    const none = await onoffDriver.probe(optionsFor({ sysfsRoot: noChips } as Rig, [19], false));
    expect(!none.ok && none.reason).toContain("onoff: no pinctrl-* gpiochip");
    const pi4 = tree(PI4_KERNEL_66);
    const fake = createOnoffModule({ load: async () => new FakeOnoff([]) });
    const missing = await fake.probe(optionsFor({ sysfsRoot: pi4 } as Rig, [19, 60], false));
    expect(missing).toEqual({
      ok: false,
      reason: "onoff: pinctrl-bcm2711 has GPIO 0-57; pins 60 do not exist",
    });
    const unbuilt = createOnoffModule({
      load: async () => {
        throw new DriverError(
          "unavailable",
          onoffLoadProblem(new Error("Could not locate the bindings file.")),
        );
      },
    });
    const reason = await unbuilt.probe(optionsFor({ sysfsRoot: pi4 } as Rig, [19], false));
    expect(!reason.ok && reason.reason).toContain("npm install-scripts approve epoll && npm rebuild epoll");
    expect(await fake.probe(optionsFor({ sysfsRoot: pi4 } as Rig, [19, 26, 13], false))).toEqual({
      ok: true,
      detail: "on/off only, pinctrl-bcm2711 base 512: pins 19, 26, 13 = gpio 531, 538, 525",
    });
  });

  it("explains a missing package, as import() and as require() report it", () => {
    const imported = Object.assign(new Error("Cannot find package 'onoff' imported from /x.js"), {
      code: "ERR_MODULE_NOT_FOUND",
    });
    // The bundle requires it (dist/main.js runs the bundle as a script, where import() has no loader).
    const required = Object.assign(new Error("Cannot find module 'onoff'\nRequire stack:\n- /x.js"), {
      code: "MODULE_NOT_FOUND",
    });
    for (const error of [imported, required]) {
      expect(onoffLoadProblem(error)).toBe(
        "onoff: the optional package is not installed: run `npm install onoff`",
      );
    }
  });

  it("a failed export releases the pins it already claimed", async () => {
    const root = tree(PI4_KERNEL_66);
    const onoff = new FakeOnoff(PI4_KERNEL_66.gpioChips ?? []);
    const driver = createOnoffModule({ load: async () => onoff }).create(
      optionsFor({ sysfsRoot: root } as Rig, [19, 57], false),
    );
    // 57 exists on the chip but the fake refuses it as if another driver had claimed it.
    const original = onoff.Gpio;
    let count = 0;
    onoff.Gpio = class extends original {
      constructor(n: number, d: "high" | "low", o: { activeLow: boolean }) {
        count += 1;
        if (count === 2) throw Object.assign(new Error("EBUSY: resource busy"), { code: "EBUSY" });
        super(n, d, o);
      }
    } as typeof original;
    await expect(driver.open([1, 1])).rejects.toMatchObject({ code: "io", message: /pin 57 as gpio569/ });
    expect(onoff.unexported).toEqual([531]);
  });
});
