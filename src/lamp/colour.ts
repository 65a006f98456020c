import type { LampState } from "./state.js";

/**
 * HSV (all in [0, 1]) -> RGB in [0, 1]. Hue 1 wraps to red, as in LAMPI's colour wheel.
 */
export function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const sector = (h % 1) * 6;
  const i = Math.floor(sector);
  const f = sector - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  switch (i) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

/**
 * The lamp's perceptual output levels, one per pin: what the eye should see, before gamma. A mono lamp
 * has one level, its brightness; an RGB lamp has three. Transitions interpolate these, so a fade is
 * even to the eye.
 */
export function levelsFor(state: LampState, channels: 1 | 3): number[] {
  if (!state.on) return channels === 1 ? [0] : [0, 0, 0];
  if (channels === 1) return [state.brightness];
  return hsvToRgb(state.color.h, state.color.s, state.brightness);
}

/**
 * Perceptual level -> PWM duty. LEDs are linear in duty but eyes are not: without this, the top half
 * of a brightness slider looks the same. `gamma` 1 is linear.
 */
export function toDuty(level: number, gamma: number): number {
  const clamped = Number.isNaN(level) ? 0 : Math.min(1, Math.max(0, level));
  return gamma === 1 ? clamped : clamped ** gamma;
}
