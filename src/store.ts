import {
  closeSync,
  fsync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import * as z from "zod/mini";
import type { LampState } from "./lamp/state.js";
import { makeState, unit } from "./lamp/state.js";
import type { Logger } from "./log.js";

// zod/mini, as in config.ts: the bundle then carries only the checks used, not all of zod.
const fileSchema = z.object({
  version: z.literal(1),
  state: z.object({
    on: z.boolean(),
    color: z.object({ h: unit, s: unit }),
    brightness: unit,
  }),
});

export interface StoreOptions {
  /**
   * Coalesces saves: at most one write per interval (a dragged slider is one write a second, not fifty).
   * The first change after a quiet interval is written at once.
   */
  readonly intervalMs?: number;
  /** After a failed write, try again this much later even if nothing changes. */
  readonly retryMs?: number;
}

/**
 * The last state, in a JSON file replaced atomically (temp file, fsync, rename, fsync of the directory),
 * so a power cut leaves either the old file or the new one, never a torn one.
 */
export class StateStore {
  private pending: LampState | undefined;
  /** The write that is due: a timer, or the next turn of the loop. */
  private due: { readonly cancel: () => void } | undefined;
  private writing: Promise<void> | undefined;
  /** When the last write began (Date.now()). */
  private wroteAt = Number.NEGATIVE_INFINITY;
  private failing = false;
  /** Set by load() when the file was there but unusable: the caller saves a good state over it. */
  corrupt = false;
  private readonly intervalMs: number;
  private readonly retryMs: number;

  constructor(
    readonly file: string,
    private readonly logger: Logger,
    options: StoreOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.retryMs = options.retryMs ?? 10_000;
  }

  /** The saved state, or undefined when there is none or it is unreadable (reported, never fatal). */
  load(): LampState | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.logger.warn(
          { file: this.file, err: error },
          "cannot read the saved state; starting from defaults",
        );
      }
      return undefined;
    }
    let reason = "unexpected content";
    try {
      const parsed = fileSchema.safeParse(JSON.parse(text));
      if (parsed.success) {
        const { state } = parsed.data;
        return makeState(state.on, state.color.h, state.color.s, state.brightness);
      }
    } catch (error) {
      reason = (error as Error).message;
    }
    this.logger.warn(
      { file: this.file, reason },
      "the saved state is corrupt; starting from defaults and replacing it",
    );
    this.corrupt = true;
    return undefined;
  }

  /** Fails early, at start, when the directory cannot even be created; the agent still runs. */
  prepare(): void {
    const dir = path.dirname(this.file);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      this.logger.warn(
        { file: this.file, err: error },
        "cannot create the state directory; the lamp works, and saving will be retried",
      );
      this.failing = true;
      return;
    }
    // A kill between write and rename leaves a temp file behind; it is never read, only tidied.
    const prefix = `${path.basename(this.file)}.`;
    try {
      for (const name of readdirSync(dir)) {
        if (name.startsWith(prefix) && name.endsWith(".tmp")) rmSync(path.join(dir, name), { force: true });
      }
    } catch {
      // Tidying is best effort.
    }
  }

  /**
   * The first change after a quiet interval is written at once (on the next turn of the event loop, so
   * the commands of one read from the socket are one write): a lamp switched on and unplugged within
   * the second comes back on. Changes after it wait out the interval, the newest written then.
   */
  save(state: LampState): void {
    this.pending = state;
    // A write already due takes this state with it; no need to read the clock for each command.
    if (this.due) return;
    this.writeIn(this.wroteAt + this.intervalMs - Date.now());
  }

  /** Writes what is pending now; used at stop. */
  async flush(): Promise<void> {
    this.due?.cancel();
    this.due = undefined;
    await this.writing;
    if (this.pending) await this.write();
  }

  /**
   * Unless a write is due already. Now is setImmediate, not a 0 ms timer: it runs in the same turn of
   * the loop as the command's read, where a timer takes one more (a command a second pays for each).
   */
  private writeIn(delayMs: number, retry = false): void {
    if (this.due) return;
    if (delayMs <= 0) {
      const immediate = setImmediate(() => this.writeNow());
      this.due = { cancel: () => clearImmediate(immediate) };
      return;
    }
    const timer = setTimeout(() => this.writeNow(), delayMs);
    // A retry after a failure must not keep a stopping agent alive.
    if (retry) timer.unref();
    this.due = { cancel: () => clearTimeout(timer) };
  }

  private writeNow(): void {
    this.due = undefined;
    if (this.writing) {
      this.writeIn(this.intervalMs);
      return;
    }
    this.wroteAt = Date.now();
    this.writing = this.write().finally(() => {
      this.writing = undefined;
    });
  }

  /**
   * Only the two fsyncs, which wait for the disk, go to libuv's thread pool. The rest (open, a write of
   * about 90 bytes, close, rename) only touches the page cache and is done in place: the same steps as
   * fs/promises took, but with 2 trips to the thread pool and back instead of 8, which cost more CPU
   * than the disk work itself (0.9 against 0.45 ms per save, measured on the VM; a lamp commanded
   * once a second saves once a second).
   */
  private async write(): Promise<void> {
    const state = this.pending;
    if (!state) return;
    this.pending = undefined;
    const temp = `${this.file}.${process.pid}.tmp`;
    try {
      const fd = this.openTemp(temp);
      try {
        const bytes = Buffer.from(`${JSON.stringify({ version: 1, state })}\n`);
        // A full disk can take part of a write without an error: that file must never be renamed.
        const written = writeSync(fd, bytes);
        if (written !== bytes.length)
          throw new Error(`wrote ${written} of ${bytes.length} bytes: is the disk full?`);
        await sync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, this.file);
      await syncDirectory(path.dirname(this.file));
      if (this.failing) this.logger.info({ file: this.file }, "saving the state works again");
      this.failing = false;
    } catch (error) {
      try {
        unlinkSync(temp);
      } catch {
        // Never made, or already renamed.
      }
      // A read-only or full disk is logged once, not on every change; the lamp keeps working.
      if (!this.failing) {
        this.logger.error({ file: this.file, err: error }, "cannot save the state; will keep trying");
      }
      this.failing = true;
      this.pending ??= state;
      this.writeIn(this.retryMs, true);
    }
  }

  /**
   * prepare() made the directory; making it again before every save cost 0.1 ms of the 0.5 ms a save
   * takes. It is made again only when it has gone since (or prepare() never ran): ENOENT, or ENOTDIR
   * when a file took its place, where mkdir then reports what is wrong (EEXIST), as it did before.
   */
  private openTemp(temp: string): number {
    try {
      return openSync(temp, "w", 0o644);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
      mkdirSync(path.dirname(this.file), { recursive: true });
      return openSync(temp, "w", 0o644);
    }
  }
}

function sync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve())));
}

// The rename is only durable once the directory entry is on disk too.
async function syncDirectory(dir: string): Promise<void> {
  const fd = openSync(dir, "r");
  try {
    await sync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is then as durable as they allow.
  } finally {
    closeSync(fd);
  }
}
