import { rmSync } from "node:fs";
import { afterAll, afterEach } from "vitest";

/**
 * What a test starts and must release: a helper with `close()` (gone for good, like a broker and its
 * temp dir), `stop()` (agents, proxies) or `end()` (MQTT clients), a temp dir's path, or a function.
 */
export type Resource =
  | { close(): unknown }
  | { stop(): unknown }
  | { end(): unknown }
  | string
  | (() => unknown);

/** Registers a resource for release and hands it back, so a start and its registration are one line. */
export type Track = <T extends Resource>(resource: T) => T;

async function release(resource: Resource): Promise<void> {
  if (typeof resource === "string") rmSync(resource, { recursive: true, force: true });
  else if (typeof resource === "function") await resource();
  else if ("close" in resource) await resource.close();
  else if ("stop" in resource) await resource.stop();
  else await resource.end();
}

/** Releases `resources` newest first; every one is released even when one fails, then the first failure is thrown. */
export async function releaseAll(resources: Resource[]): Promise<void> {
  const failures: unknown[] = [];
  for (const resource of resources.splice(0).reverse()) {
    await release(resource).catch((error: unknown) => failures.push(error));
  }
  if (failures.length > 0) throw failures[0];
}

/**
 * One teardown instead of a hand-written hook per file: everything tracked is released after each test
 * (`"each"`) or after the file or describe block (`"all"`), newest first, so an agent stops before the
 * broker it talks to.
 */
export function teardown(
  when: "each" | "all",
  /** Where the release hook goes: vitest's afterEach or afterAll; a test of this helper passes its own. */
  register: (hook: () => Promise<void>) => void = when === "each" ? afterEach : afterAll,
): Track {
  const tracked: Resource[] = [];
  register(() => releaseAll(tracked));
  return (resource) => {
    tracked.push(resource);
    return resource;
  };
}
