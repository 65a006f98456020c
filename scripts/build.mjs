#!/usr/bin/env node
// `npm run build`: bundles the agent and lampctl into self-contained files in dist/ with esbuild.
// Type checking is `npm run lint` (tsc); this only bundles, which is what a Pi can afford.
//
//   node scripts/build.mjs            dist/main.js, dist/cli/lampctl.js, dist/cli/demo.js
//   node scripts/build.mjs --device   without the demo (its broker, aedes, is a development package)
//
// install.sh runs this on a Pi with esbuild installed on its own in a temporary directory, found
// through NODE_PATH (which `require` honours and `import` does not).
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const esbuild = createRequire(import.meta.url)("esbuild");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const device = process.argv.includes("--device");

/**
 * MQTT.js loads at start what an agent on mqtt:// or mqtts:// never runs: the WebSocket transport, the
 * SOCKS proxy client (with an IP address library) and the browsers' worker timers; and its TLS transport,
 * which an agent on mqtt:// never runs. Each `require` below gets a stand-in whose functions load the real
 * module on their first call, so ws://, wss://, mqtts:// and socksProxy still work. The build fails if a
 * module stops exporting these functions.
 */
const LAZY = [
  {
    importer: /mqtt\/build\/lib\/connect\/index\.js$/,
    request: "./ws",
    functions: ["streamBuilder", "browserStreamBuilder"],
  },
  { importer: /mqtt\/build\/lib\/connect\/(tcp|tls)\.js$/, request: "./socks", functions: ["default"] },
  {
    importer: /mqtt\/build\/lib\/get-timer\.js$/,
    request: "worker-timers",
    functions: ["setInterval", "clearInterval"],
  },
  // mqtts:// only; on mqtt:// Node's tls and crypto (and OpenSSL's start, 2.5 MiB) are never loaded.
  { importer: /mqtt\/build\/lib\/connect\/index\.js$/, request: "./tls", functions: ["default"] },
  // dotenv decrypts .env.vault files with it; the agent reads plain .env files.
  { importer: /dotenv\/lib\/main\.js$/, request: "crypto", functions: ["createDecipheriv"] },
];

/** Every request in LAZY, and nothing else. */
const LAZY_REQUEST = new RegExp(
  `^(${LAZY.map((l) => l.request.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})$`,
);

const lazyRequires = {
  name: "lazy-requires",
  setup(build) {
    build.onResolve({ filter: LAZY_REQUEST }, (args) => {
      const lazy = LAZY.find((l) => l.request === args.path && l.importer.test(args.importer));
      if (!lazy) return undefined;
      const real = createRequire(args.importer)(args.path);
      const missing = lazy.functions.filter((name) => typeof real[name] !== "function");
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
    build.onLoad({ filter: /.*/, namespace: "lazy" }, ({ pluginData: { lazy, dir } }) => ({
      contents: [
        "let real;",
        `const load = () => (real ??= require(${JSON.stringify(lazy.request)}));`,
        "exports.__esModule = true;",
        ...lazy.functions.map(
          (name) =>
            `exports[${JSON.stringify(name)}] = (...args) => load()[${JSON.stringify(name)}](...args);`,
        ),
      ].join("\n"),
      resolveDir: dir,
      loader: "js",
    }));
  },
};

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
      contents: [
        "const off = () => {};",
        "off.enabled = false;",
        "off.extend = () => off;",
        "module.exports = () => off;",
      ].join("\n"),
      loader: "js",
    }));
  },
};

const entryPoints = { main: "src/main.ts", "cli/lampctl": "src/cli/lampctl.ts" };
if (!device) entryPoints["cli/demo"] = "src/cli/demo.ts";

const outdir = path.join(root, "dist");
rmSync(outdir, { recursive: true, force: true });

try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints,
    outdir,
    bundle: true,
    platform: "node",
    format: "esm",
    // package.json's engines: the agent must start on Node 18.
    target: "node18",
    // Native addons stay outside, loaded from node_modules only when their driver is chosen; the
    // demo's in-process broker is a development dependency.
    external: ["pigpio", "onoff", "aedes"],
    // Fewer bytes for V8 to scan at every start; names are kept so stack traces still read.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    define: { __LAMP_AGENT_VERSION__: JSON.stringify(pkg.version) },
    // Bundled CommonJS packages (pino, mqtt's dependencies) call require() for Node's built-ins.
    banner: {
      js: 'import { createRequire as __lampCreateRequire } from "node:module"; const require = __lampCreateRequire(import.meta.url);',
    },
    plugins: [lazyRequires, mqttPacketDebugOff],
    logLevel: "warning",
  });
} catch {
  // esbuild has already printed the errors with their file and line.
  process.exit(1);
}
if (debugReplacedIn.size === 0) {
  process.stderr.write("build: mqtt-packet no longer imports debug; update mqttPacketDebugOff\n");
  process.exit(1);
}

// Commands: install.sh links them into /usr/local/bin, and `npm install -g` expects the same.
for (const command of ["main.js", "cli/lampctl.js"]) chmodSync(path.join(outdir, command), 0o755);

// The entry points are ES modules with a .js name: Node needs the nearest package.json to say so.
mkdirSync(outdir, { recursive: true });
writeFileSync(path.join(outdir, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
