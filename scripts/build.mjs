#!/usr/bin/env node
// `npm run build`: bundles the agent and lampctl into self-contained files in dist/ with esbuild.
// Type checking is `npm run lint` (tsc); this only bundles, which is what a Pi can afford.
//
//   node scripts/build.mjs            dist/main.js, dist/agent.js, dist/cli/lampctl.js, dist/cli/demo.js
//   node scripts/build.mjs --device   without the demo (its broker, aedes, is a development package)
//   node scripts/build.mjs --floor DIR  the bench's floor (bench/floor-echo.mjs) bundled and started as the
//                                       agent is: DIR/main.js, DIR/agent.js, DIR/lazy/ (bench/run.mjs)
//
// dist/main.js (src/start.ts) is the `lamp-agent` command: it runs the agent's bundle, dist/agent.js,
// through V8's code cache. dist/lazy/ holds what the bundles load only on first use (LAZY below).
//
// install.sh runs this on a Pi with esbuild installed on its own in a temporary directory, found
// through NODE_PATH (which `require` honours and `import` does not).
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const esbuild = createRequire(import.meta.url)("esbuild");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const device = process.argv.includes("--device");
// The bench's start floor: an MQTT.js lamp pays for its bundle, its loader and its code cache as the agent
// does, so the agent's start is compared with the same echo built the same way (docs/performance.md).
const floorAt = process.argv.indexOf("--floor");
const floorDir = floorAt >= 0 ? process.argv[floorAt + 1] : undefined;
if (floorAt >= 0 && !floorDir) {
  process.stderr.write("build: --floor needs a directory to write to\n");
  process.exit(2);
}

/**
 * MQTT.js loads at start what an agent on mqtt:// or mqtts:// never runs: the WebSocket transport, the
 * SOCKS proxy client (with an IP address library) and the browsers' worker timers; and its TLS transport,
 * which an agent on mqtt:// never runs. pino loads its worker-thread transport (and Node's
 * worker_threads), which the agent does not use. Each `require` below gets a stand-in that loads the real
 * module on first use, so ws://, wss://, mqtts:// and socksProxy still work. A module with a `file` is
 * bundled on its own into dist/lazy/<file>.cjs, so its text is not in the entry points either: V8 scans
 * every byte of an entry point at start, used or not (about 200 kB of these). The build fails if a module
 * stops exporting these functions.
 */
const LAZY = [
  {
    importer: /mqtt\/build\/lib\/connect\/index\.js$/,
    request: "./ws",
    functions: ["streamBuilder", "browserStreamBuilder"],
    file: "mqtt-ws",
  },
  {
    importer: /mqtt\/build\/lib\/connect\/(tcp|tls)\.js$/,
    request: "./socks",
    functions: ["default"],
    file: "mqtt-socks",
  },
  {
    importer: /mqtt\/build\/lib\/get-timer\.js$/,
    request: "worker-timers",
    functions: ["setInterval", "clearInterval"],
    file: "worker-timers",
  },
  // mqtts:// only; on mqtt:// Node's tls and crypto (and OpenSSL's start, 2.5 MiB) are never loaded.
  {
    importer: /mqtt\/build\/lib\/connect\/index\.js$/,
    request: "./tls",
    functions: ["default"],
    file: "mqtt-tls",
  },
  // MQTT.js logs through `debug`, which prints only when DEBUG names it (the agent gives MQTT.js a logger
  // of its own, src/mqtt/client-options.ts). Loading it costs every start Node's tty and its colour
  // probe (about 4.5 ms of a 105 ms start, docs/performance.md): while DEBUG is unset at start each
  // logger it makes is one that does nothing, and with DEBUG set the real one is loaded.
  { importer: /mqtt\/build\/lib\/.*\.js$/, request: "debug", whenEnv: "DEBUG", file: "debug" },
  // dotenv decrypts .env.vault files with it; the agent reads plain .env files.
  { importer: /dotenv\/lib\/main\.js$/, request: "crypto", functions: ["createDecipheriv"] },
  // The module is the class: pino calls `new ThreadStream(...)` only for `transport` targets, and
  // `new SonicBoom(...)` only for pino.destination(); the agent gives pino a destination of its own.
  { importer: /pino\/lib\/transport\.js$/, request: "thread-stream", construct: true, file: "thread-stream" },
  { importer: /pino\/lib\/tools\.js$/, request: "sonic-boom", construct: true, file: "sonic-boom" },
  // pino reads isMainThread as it loads, and uses it only for pino.destination()'s streams; loading
  // worker_threads for it cost every start six of Node's modules. The agent runs pino on its main thread.
  { importer: /pino\/lib\/tools\.js$/, request: "worker_threads", constants: { isMainThread: true } },
];

/** Every request in LAZY, and nothing else. */
const LAZY_REQUEST = new RegExp(
  `^(${LAZY.map((l) => l.request.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})$`,
);
const LAZY_DIR = "lazy";
/** Where each LAZY module was first required from: its separate bundle is resolved from there. */
const lazyImporters = new Map();

/** A `debug` logger that does nothing: for mqtt-packet always, for MQTT.js while DEBUG is unset. */
const OFF_LOGGER = ["const off = () => {};", "off.enabled = false;", "off.extend = () => off;"];

/** What a stand-in offers that the real module no longer has. */
function missingExports(lazy, real) {
  if (lazy.construct || lazy.whenEnv) return typeof real === "function" ? [] : ["the module itself"];
  if (lazy.constants) {
    return Object.entries(lazy.constants)
      .filter(([name, value]) => typeof real[name] !== typeof value)
      .map(([name]) => name);
  }
  return lazy.functions.filter((name) => typeof real[name] !== "function");
}

/** The stand-ins for one entry point, whose bundle is written to `outDir`. */
const lazyRequires = (outDir) => ({
  name: "lazy-requires",
  setup(build) {
    build.onResolve({ filter: LAZY_REQUEST }, (args) => {
      const lazy = LAZY.find((l) => l.request === args.path && l.importer.test(args.importer));
      if (!lazy) return undefined;
      lazyImporters.set(lazy, args.importer);
      const real = createRequire(args.importer)(args.path);
      const missing = missingExports(lazy, real);
      if (missing.length > 0) {
        return {
          errors: [{ text: `${args.path} from ${args.importer} no longer exports ${missing.join(", ")}` }],
        };
      }
      // Relative to the project: the path names the module in the bundle, which must not depend on
      // where it was built (install.sh compares bundles to see whether anything changed).
      return {
        path: `${path.relative(root, args.importer)}#${args.path}`,
        namespace: "lazy",
        pluginData: { lazy, dir: path.dirname(args.importer) },
      };
    });
    // The separate bundles are found at run time by the requiring file's own `require`, relative to
    // it; never bundled.
    build.onResolve({ filter: /\.cjs$/, namespace: "lazy" }, (args) => ({ path: args.path, external: true }));
    build.onLoad({ filter: /.*/, namespace: "lazy" }, ({ pluginData: { lazy, dir } }) => {
      const relative = lazy.file && path.relative(outDir, path.join(outdir, LAZY_DIR, `${lazy.file}.cjs`));
      const target = !relative ? lazy.request : relative.startsWith("..") ? relative : `./${relative}`;
      const load = `const load = () => (real ??= require(${JSON.stringify(target)}));`;
      if (lazy.constants) {
        return {
          contents: `module.exports = ${JSON.stringify(lazy.constants)};`,
          resolveDir: dir,
          loader: "js",
        };
      }
      if (lazy.whenEnv) {
        // A factory of loggers: off unless the variable was set when the logger was made.
        const env = `process.env[${JSON.stringify(lazy.whenEnv)}]`;
        const made = `module.exports = (...args) => (${env} ? load()(...args) : off);`;
        return {
          contents: ["let real;", load, ...OFF_LOGGER, made].join("\n"),
          resolveDir: dir,
          loader: "js",
        };
      }
      const exported = lazy.construct
        ? ["module.exports = function LazyConstructor(...args) { return new (load())(...args); };"]
        : [
            "exports.__esModule = true;",
            ...lazy.functions.map(
              (name) =>
                `exports[${JSON.stringify(name)}] = (...args) => load()[${JSON.stringify(name)}](...args);`,
            ),
          ];
      return { contents: ["let real;", load, ...exported].join("\n"), resolveDir: dir, loader: "js" };
    });
  },
});

/** The modules LAZY moves to files of their own, each bundled once from where its importer finds it. */
function lazyBundles() {
  const bundles = new Map();
  for (const lazy of LAZY.filter((l) => l.file)) {
    if (bundles.has(lazy.file)) continue;
    const importer = lazyImporters.get(lazy);
    if (!importer) continue;
    bundles.set(lazy.file, createRequire(importer).resolve(lazy.request));
  }
  return bundles;
}
/**
 * mqtt-packet logs through `debug` several times per packet (46 calls in its parser), formatting
 * arguments for a logger that is always off: the agent excludes its namespaces (src/debug-guard.ts),
 * since its CONNECT output prints the password. In the bundle its `debug` is a function that does
 * nothing, which takes about 6% off the agent's CPU per command (docs/performance.md). MQTT.js keeps the
 * real `debug`, which the agent routes to its logger, scrubbed. The build fails if mqtt-packet stops
 * importing `debug`, so a renamed import cannot quietly bring the cost back.
 */
const debugReplacedIn = new Set();
const mqttPacketDebugOff = {
  name: "mqtt-packet-debug-off",
  setup(build) {
    build.onResolve({ filter: /^debug$/ }, (args) => {
      if (!/[\\/]node_modules[\\/]mqtt-packet[\\/]/.test(args.importer)) return undefined;
      debugReplacedIn.add(path.basename(args.importer));
      return { path: "debug", namespace: "debug-off" };
    });
    build.onLoad({ filter: /.*/, namespace: "debug-off" }, () => ({
      contents: [...OFF_LOGGER, "module.exports = () => off;"].join("\n"),
      loader: "js",
    }));
  },
};

const entryPoints = floorDir
  ? { agent: "bench/floor-echo.mjs" }
  : { agent: "src/main.ts", "cli/lampctl": "src/cli/lampctl.ts" };
if (!device && !floorDir) entryPoints["cli/demo"] = "src/cli/demo.ts";

const outdir = floorDir ? path.resolve(floorDir) : path.join(root, "dist");
rmSync(outdir, { recursive: true, force: true });

const shared = {
  absWorkingDir: root,
  bundle: true,
  platform: "node",
  // package.json's engines: the agent must start on Node 18.
  target: "node18",
  // Native addons stay outside, loaded from node_modules only when their driver is chosen; the
  // demo's in-process broker is a development dependency.
  external: ["pigpio", "onoff", "aedes"],
  // MQTT.js and mqtt-packet's `bl` use readable-stream, a copy of Node's own streams for browsers (120
  // kB of it, with its string_decoder and abort-controller); on Node the built-in is the same code,
  // already loaded by `net`.
  alias: { "readable-stream": "stream" },
  // Fewer bytes for V8 to scan at every start; names are kept so stack traces still read.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "none",
  logLevel: "warning",
};

/** The import.meta.url of the ESM sources, in a CommonJS bundle. */
const moduleUrl = 'const __lampModuleUrl=require("node:url").pathToFileURL(__filename).href;';

/**
 * The agent's bundle is one function expression taking CommonJS's five parameters, not a module:
 * dist/main.js compiles it with V8's code cache (src/code-cache.ts) and calls it.
 */
const asFunction = {
  banner: `(function(exports,require,module,__filename,__dirname){"use strict";${moduleUrl}`,
  footer: "})",
};

const build = (name, entry, options = {}) => {
  const outfile = path.join(outdir, `${name}.js`);
  return esbuild.build({
    ...shared,
    entryPoints: [entry],
    outfile,
    // CommonJS, not ESM: Node's ES module loader costs a start more (its own modules, and
    // `import "node:fs"` loads fs/promises with readline behind it); the sources stay ESM.
    format: "cjs",
    define: { __LAMP_AGENT_VERSION__: JSON.stringify(pkg.version), "import.meta.url": "__lampModuleUrl" },
    banner: { js: `"use strict";${moduleUrl}` },
    plugins: [lazyRequires(path.dirname(outfile)), mqttPacketDebugOff],
    ...options,
  });
};

try {
  // One build per entry point: each finds dist/lazy/ from its own directory.
  await Promise.all(
    Object.entries(entryPoints).map(([name, entry]) =>
      build(
        name,
        entry,
        name === "agent" ? { banner: { js: asFunction.banner }, footer: { js: asFunction.footer } } : {},
      ),
    ),
  );
  // The cache of compiled code is kept per bundle: a new bundle must never run an old one's code.
  const bundleId = createHash("sha256")
    .update(readFileSync(path.join(outdir, "agent.js")))
    .digest("hex")
    .slice(0, 16);
  await build("main", "src/start.ts", {
    define: { __LAMP_BUNDLE_ID__: JSON.stringify(bundleId), "import.meta.url": "__lampModuleUrl" },
  });
  await Promise.all(
    [...lazyBundles()].map(([file, entry]) =>
      esbuild.build({
        ...shared,
        entryPoints: [entry],
        outfile: path.join(outdir, LAZY_DIR, `${file}.cjs`),
        format: "cjs",
        // mqtts:// loads the SOCKS client's file too, not a second copy of it.
        plugins: [lazyRequires(path.join(outdir, LAZY_DIR))],
      }),
    ),
  );
} catch {
  // esbuild has already printed the errors with their file and line.
  process.exit(1);
}
// The floor has no logger and no configuration file: pino's and dotenv's stand-ins are not its.
const unseen = floorDir ? [] : LAZY.filter((l) => !lazyImporters.has(l));
if (unseen.length > 0) {
  const names = unseen.map((l) => l.request).join(", ");
  process.stderr.write(`build: no bundled module requires ${names} any more; update LAZY\n`);
  process.exit(1);
}
if (debugReplacedIn.size === 0) {
  process.stderr.write("build: mqtt-packet no longer imports debug; update mqttPacketDebugOff\n");
  process.exit(1);
}

// Commands: install.sh links them into /usr/local/bin, and `npm install -g` expects the same.
for (const command of floorDir ? ["main.js"] : ["main.js", "cli/lampctl.js"])
  chmodSync(path.join(outdir, command), 0o755);

// The entry points are CommonJS with a .js name, inside a package that says "module": the nearest
// package.json must say so.
mkdirSync(outdir, { recursive: true });
writeFileSync(path.join(outdir, "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
