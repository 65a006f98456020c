import * as z from "zod/mini";

/** The lamp's state in the LAMPI shape: every number in [0, 1], kept at two decimals. */
export interface LampState {
  readonly on: boolean;
  readonly color: { readonly h: number; readonly s: number };
  readonly brightness: number;
}

/**
 * The rule for each of the state's numbers (hue, saturation, brightness): 0 to 1. One rule for the
 * commands the lamp takes and the state file it restores (zod/mini: the bundle carries only the checks
 * used).
 */
export const unit = z.number().check(z.minimum(0), z.maximum(1));

/** A fresh lamp behaves like a bulb: on, white, full brightness. */
export const DEFAULT_STATE: LampState = Object.freeze({
  on: true,
  color: Object.freeze({ h: 0, s: 0 }),
  brightness: 1,
});

/**
 * Two decimals is a 1% step, below what an eye sees on an LED; rounding here is also what stops a UI
 * slider and the lamp from chasing each other's floating-point noise.
 */
export function quantize(value: number): number {
  // toFixed-free rounding; the epsilon keeps 0.125 from becoming 0.12 through binary representation.
  return Math.round((value + Number.EPSILON) * 100) / 100;
}

export function sameState(a: LampState, b: LampState): boolean {
  return a.on === b.on && a.brightness === b.brightness && a.color.h === b.color.h && a.color.s === b.color.s;
}

export function makeState(on: boolean, h: number, s: number, brightness: number): LampState {
  return { on, color: { h: quantize(h), s: quantize(s) }, brightness: quantize(brightness) };
}
