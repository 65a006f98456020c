import { closest, distance } from "fastest-levenshtein";

/**
 * The known name a user probably meant by an unknown one (an option, a variable): the only one it is
 * the start of, else the nearest a few edits away; none when nothing is close.
 */
export function suggest(name: string, known: readonly string[]): string | undefined {
  if (known.length === 0 || name.length === 0) return undefined;
  const extended = known.filter((k) => k.startsWith(name));
  if (extended.length === 1) return extended[0];
  const near = closest(name, [...known]);
  return distance(name, near) <= Math.max(1, Math.floor(name.length / 3)) ? near : undefined;
}
