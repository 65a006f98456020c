// fs.promises on first use, not node:fs/promises: the mock driver and a laptop never load it.
import { constants, promises as fsp } from "node:fs";

/**
 * The file operations the sysfs drivers make, and nothing else. The real one is `node:fs/promises`;
 * tests pass a wrapper around it that behaves like the kernel (creating `pwmN/` on `export`, refusing
 * a duty above the period, EACCES until "udev" has run), so the driver code under test is the real code
 * and only the OS boundary is fake.
 */
export interface SysfsIO {
  readFile(file: string): Promise<string>;
  /** Binary device-tree properties (`of_node/gpios`). */
  readBytes(file: string): Promise<Uint8Array>;
  writeFile(file: string, data: string): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  realpath(file: string): Promise<string>;
  /** Rejects when `file` cannot be opened for writing by this process. */
  checkWritable(file: string): Promise<void>;
  exists(file: string): Promise<boolean>;
}

export const nodeSysfs: SysfsIO = {
  readFile: (file) => fsp.readFile(file, "utf8"),
  readBytes: (file) => fsp.readFile(file),
  writeFile: (file, data) => fsp.writeFile(file, data),
  readdir: (dir) => fsp.readdir(dir),
  realpath: (file) => fsp.realpath(file),
  checkWritable: (file) => fsp.access(file, constants.W_OK),
  exists: async (file) => {
    try {
      await fsp.access(file);
      return true;
    } catch {
      return false;
    }
  },
};

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export function errnoCode(error: unknown): string | undefined {
  return error !== null && typeof error === "object" && "code" in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

/**
 * Runs `step` until it stops failing with EACCES/EPERM/ENOENT, for at most `timeoutMs`. Right after an
 * `export` the kernel creates the new directory owned by root, and only then does udev run the rule
 * that hands it to group gpio: writes in between fail (raspberrypi/linux#6818; onoff does the same
 * dance, fivdi/onoff `waitForGpioAccessPermission`). Any other error, or the deadline, is final.
 */
export async function retryWhileSettling<T>(
  step: () => Promise<T>,
  clock: Clock,
  timeoutMs: number,
  intervalMs = 10,
): Promise<T> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    try {
      return await step();
    } catch (error) {
      const code = errnoCode(error);
      const transient = code === "EACCES" || code === "EPERM" || code === "ENOENT";
      if (!transient || clock.now() >= deadline) throw error;
      await clock.sleep(intervalMs);
    }
  }
}
