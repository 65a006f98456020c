// The three regimes a lamp sees (docs/performance.md): a steady stream, a cold process's first commands,
// and sparse commands a second apart. One command at a time, each waiting for its state; CPU of all
// threads from /proc; blocks interleaved between the targets on one broker, in both orders; medians.
// Two instances of the agent run as an A/A pair: how far apart they land is the noise of the run.
import { median, now, sleep, threadCpu } from "./lib.mjs";

const command = (brightness, client) =>
  JSON.stringify({ on: true, color: { h: 0, s: 0 }, brightness, client });
const cycle = (i) => Math.round((0.01 + (i % 98) / 100) * 100) / 100;

export function regimeParameters(quick) {
  return {
    // Past 3,334 commands the mock driver has recorded 10,000 writes (3 pins each): the steady state.
    steadyWarmup: 4000,
    // Many short blocks: a block of the same program moves by 20% on a shared machine, and the store's
    // save (once a second) or a collection lands in some blocks and not others; the median of 24 pairs
    // holds where that of 6 did not (the A/A pair read 0.97x to 1.15x over runs of 6 blocks).
    steadyBlocks: quick ? 24 : 40,
    steadyPerBlock: quick ? 150 : 300,
    coldWarmup: 50,
    coldCommands: 300,
    coldRounds: quick ? 4 : 6,
    // Active and idle windows of 60 s each: whole periods of what the programs do on their own (the
    // agent's keepalive timer every 5 s and telemetry every 60 s, the echo's keepalive every 30 s), so the
    // idle window subtracts exactly what the active one carried. With 10 s windows one telemetry or ping
    // landed in one window of six, and blocks came out at -5.9 to +1.5 ms per command.
    sparseBlocks: 3,
    sparsePerBlock: 60,
    sparseGapMs: 1000,
    // V8's memory reducer collects a heap the steady regime grew, in the first half minute after the
    // allocation stops: the steady regime's after-effect, not what a command a second costs.
    sparseSettleMs: 60_000,
  };
}

/** Both orders: forward on even blocks, reversed on odd ones. */
const order = (targets, n) => (n % 2 === 0 ? targets : [...targets].reverse());

async function roundTrip(recorder, id, i, client) {
  const brightness = cycle(i);
  const reply = recorder.next(
    `lamp/${id}/changed`,
    (text) => {
      const state = JSON.parse(text);
      return state.brightness === brightness && state.client === client;
    },
    10_000,
  );
  recorder.client.publish(`lamp/${id}/set_config`, command(brightness, client), { qos: 1 });
  await reply;
}

async function commands(recorder, id, from, count, client) {
  for (let i = from; i < from + count; i++) {
    await roundTrip(recorder, id, i, client);
    if (i % 200 === 0) recorder.forget();
  }
}

/**
 * `targets`: [{ key, system }]; `launch(system, id)` starts one and returns { child, stop }.
 * Returns per target the samples (µs of CPU per command) of each regime.
 */
export async function runRegimes({ recorder, targets, launch, quick, log }) {
  const p = regimeParameters(quick);
  const samples = Object.fromEntries(
    targets.map((t) => [t.key, { steady: [], cold: [], coldMainShare: [], sparse: [] }]),
  );
  const start = async (target, id) => {
    const up = recorder.next(`state/${id}`, (text) => text === "1");
    const run = launch(target.system, id);
    await up;
    return run;
  };

  // Cold: a new process per round, 50 commands, then the CPU of the next 300.
  log(`regime first ${p.coldCommands}: ${p.coldRounds} rounds of a fresh process each, both orders`);
  for (let round = 0; round < p.coldRounds; round++) {
    for (const target of order(targets, round)) {
      const id = `cold${round}-${target.key}`;
      const run = await start(target, id);
      await commands(recorder, id, 0, p.coldWarmup, "cold");
      const before = threadCpu(run.child.pid);
      await commands(recorder, id, p.coldWarmup, p.coldCommands, "cold");
      const after = threadCpu(run.child.pid);
      await run.stop();
      samples[target.key].cold.push(((after.ms - before.ms) * 1000) / p.coldCommands);
      samples[target.key].coldMainShare.push((after.mainMs - before.mainMs) / (after.ms - before.ms));
      recorder.forget();
    }
  }

  // One long-lived instance per target for the steady and sparse regimes.
  const running = {};
  for (const target of targets) running[target.key] = await start(target, `regime-${target.key}`);
  const pid = (target) => running[target.key].child.pid;
  const idOf = (target) => `regime-${target.key}`;

  log(
    `regime steady: ${p.steadyWarmup} commands each (interleaved), then ${p.steadyBlocks} blocks of ${p.steadyPerBlock}`,
  );
  for (let i = 0; i < p.steadyWarmup; i += 100) {
    for (const target of order(targets, i / 100)) await commands(recorder, idOf(target), i, 100, "warm");
  }
  let sent = p.steadyWarmup;
  for (let block = 0; block < p.steadyBlocks; block++) {
    for (const target of order(targets, block)) {
      const before = threadCpu(pid(target)).ms;
      await commands(recorder, idOf(target), sent, p.steadyPerBlock, "steady");
      samples[target.key].steady.push(((threadCpu(pid(target)).ms - before) * 1000) / p.steadyPerBlock);
    }
    sent += p.steadyPerBlock;
  }

  // Sparse: every target gets one command a second, in turn (order alternating each second); an idle
  // period as long follows each active one, and its CPU (timers, keepalive) is subtracted.
  log(
    `regime sparse: ${p.sparseBlocks} blocks of ${p.sparsePerBlock} commands a ${p.sparseGapMs} ms apart, each with an idle block`,
  );
  await sleep(p.sparseSettleMs);
  for (let block = 0; block < p.sparseBlocks; block++) {
    const activeFrom = Object.fromEntries(targets.map((t) => [t.key, threadCpu(pid(t)).ms]));
    const began = now();
    for (let k = 0; k < p.sparsePerBlock; k++) {
      const slot = began + k * p.sparseGapMs;
      await sleep(Math.max(0, slot - now()));
      for (const target of order(targets, k)) await roundTrip(recorder, idOf(target), sent + k, "sparse");
    }
    await sleep(Math.max(0, began + p.sparsePerBlock * p.sparseGapMs - now()));
    const activeMs = now() - began;
    const idleFrom = Object.fromEntries(targets.map((t) => [t.key, threadCpu(pid(t)).ms]));
    await sleep(activeMs);
    for (const target of targets) {
      const end = threadCpu(pid(target)).ms;
      const active = idleFrom[target.key] - activeFrom[target.key];
      const idle = end - idleFrom[target.key];
      samples[target.key].sparse.push(((active - idle) * 1000) / p.sparsePerBlock);
    }
    sent += p.sparsePerBlock;
    recorder.forget();
  }

  for (const run of Object.values(running)) await run.stop();
  return { parameters: p, samples };
}

const r = (x, d = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : undefined);

/**
 * Medians per target and regime, ratios of medians, and paired ratios (median of per-block ratios).
 * Each comes with the A/A ratio of the same regime (agent over its twin): a difference smaller than
 * the A/A's distance from 1 is noise.
 */
export function summariseRegimes({ samples, parameters }, comparisons) {
  const regimes = ["steady", "cold", "sparse"];
  const medians = {};
  for (const [key, s] of Object.entries(samples)) {
    medians[key] = Object.fromEntries(regimes.map((g) => [g, r(median(s[g]))]));
    medians[key].coldMainShare = r(median(s.coldMainShare), 2);
  }
  const ratios = {};
  // Paired: the median of the per-block ratios. The two blocks of a pair ran next to each other, so
  // the machine's drift (other work on a shared machine) largely cancels, which medians alone do not.
  const paired = {};
  for (const [a, b] of comparisons) {
    if (!medians[a] || !medians[b]) continue;
    ratios[`${a}/${b}`] = Object.fromEntries(regimes.map((g) => [g, r(medians[a][g] / medians[b][g], 3)]));
    paired[`${a}/${b}`] = Object.fromEntries(
      regimes.map((g) => [g, r(median(samples[a][g].map((x, i) => x / samples[b][g][i])), 3)]),
    );
  }
  return { parameters, medians, ratios, paired, samples };
}

export function printRegimes(summary, labels) {
  const regimeLabel = {
    steady: `steady (after ${summary.parameters.steadyWarmup}), µs CPU per command`,
    cold: `first ${summary.parameters.coldCommands} after ${summary.parameters.coldWarmup}, µs per command`,
    sparse: `sparse (1/s, idle subtracted), µs per command`,
  };
  const keys = Object.keys(summary.medians);
  const ratioKeys = Object.keys(summary.ratios);
  const heads = ["regime (medians)", ...keys.map((k) => labels[k] ?? k), ...ratioKeys];
  const rows = Object.entries(regimeLabel).map(([g, label]) => [
    label,
    ...keys.map((k) => String(summary.medians[k][g] ?? "-")),
    ...ratioKeys.map((k) =>
      summary.ratios[k][g] === undefined ? "-" : `${summary.ratios[k][g]}x (${summary.paired[k][g]}x)`,
    ),
  ]);
  rows.push([
    "first commands: main thread's share of CPU",
    ...keys.map((k) => String(summary.medians[k].coldMainShare ?? "-")),
    ...ratioKeys.map(() => ""),
  ]);
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(heads), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}
