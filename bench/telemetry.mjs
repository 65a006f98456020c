// The cost of one telemetry reading (src/diagnostics/sample.ts), which the agent takes every
// TELEMETRY_INTERVAL seconds: the readers bundled from the sources with esbuild, then timed here
// against the real /sys and /proc and against a fake tree where the thermal zone and wlan0 exist (the
// parse path a Pi runs). Also the alternatives the readers avoid: process.memoryUsage() and async reads.
//
//   node bench/telemetry.mjs [iterations]     prints µs per reading, and a JSON line for the record
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const esbuild = createRequire(import.meta.url)("esbuild");
const iterations = Number(process.argv[2] ?? 20_000);

const work = mkdtempSync(path.join(tmpdir(), "lamp-bench-telemetry-"));
const bundle = path.join(work, "sample.mjs");
await esbuild.build({
  entryPoints: [path.join(root, "src/diagnostics/sample.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  outfile: bundle,
  logLevel: "error",
});
const { sample } = await import(pathToFileURL(bundle).href);

const fake = path.join(work, "fake");
mkdirSync(path.join(fake, "class/thermal/thermal_zone0"), { recursive: true });
mkdirSync(path.join(fake, "net"), { recursive: true });
writeFileSync(path.join(fake, "class/thermal/thermal_zone0/temp"), "48312\n");
writeFileSync(
  path.join(fake, "net/wireless"),
  "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" +
    " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n" +
    " wlan0: 0000   70.  -40.  -256        0      0      0      0      0        0\n",
);

/** Mean µs per call over `iterations`, after a warm-up of a tenth as many. */
async function time(fn) {
  for (let i = 0; i < iterations / 10; i++) await fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await fn();
  return Number(process.hrtime.bigint() - start) / 1000 / iterations;
}

const uptime = () => process.uptime();
const results = {
  machine: {
    sysfsRoot: "/sys",
    procRoot: "/proc",
    ...sample({ sysfsRoot: "/sys", procRoot: "/proc", uptime }),
  },
  reading_real_us: await time(() => JSON.stringify(sample({ sysfsRoot: "/sys", procRoot: "/proc", uptime }))),
  reading_fake_tree_us: await time(() => JSON.stringify(sample({ sysfsRoot: fake, procRoot: fake, uptime }))),
  memory_usage_rss_us: await time(() => process.memoryUsage.rss()),
  memory_usage_full_us: await time(() => process.memoryUsage()),
  read_sync_us: await time(() => readFileSync(path.join(fake, "net/wireless"), "utf8")),
  read_async_us: await time(() => readFile(path.join(fake, "net/wireless"), "utf8")),
};
rmSync(work, { recursive: true, force: true });

const round = (us) => Math.round(us * 10) / 10;
console.log(`one reading, this machine's /sys and /proc: ${round(results.reading_real_us)} µs`);
console.log(`one reading, thermal zone and wlan0 present: ${round(results.reading_fake_tree_us)} µs`);
console.log(
  `process.memoryUsage.rss() ${round(results.memory_usage_rss_us)} µs, process.memoryUsage() ${round(results.memory_usage_full_us)} µs`,
);
console.log(
  `a /proc-sized file read sync ${round(results.read_sync_us)} µs, async ${round(results.read_async_us)} µs`,
);
console.log(JSON.stringify({ iterations, node: process.versions.node, ...results }));
