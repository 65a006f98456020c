import { readFileSync } from "node:fs";
import path from "node:path";

/** The interface a Pi's on-board Wi-Fi has. */
export const WIFI_INTERFACE = "wlan0";

/**
 * The Wi-Fi signal in dBm from the kernel's wireless statistics (`<procRoot>/net/wireless`, the
 * "level" column of the interface's line), as `iwconfig` reads it. Null when the file or the interface
 * is absent (a wired or non-Pi machine, Wi-Fi off), or when the level is not a dBm figure: a driver
 * that reports a relative level, or 0 while not associated.
 *
 *   Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 *    face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 *    wlan0: 0000   70.  -40.  -256        0      0      0      0      0        0
 */
export function readWifiSignal(procRoot: string, iface: string = WIFI_INTERFACE): number | null {
  let text: string;
  try {
    text = readFileSync(path.join(procRoot, "net/wireless"), "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const match = /^\s*([^\s:]+):\s+(.*)$/.exec(line);
    if (match?.[1] !== iface) continue;
    // status, link, level, noise...: the level is the third field, with a trailing "." when updated.
    const level = match[2]?.trim().split(/\s+/)[2]?.replace(/\.$/, "");
    if (level === undefined || !/^-?\d+$/.test(level)) return null;
    const dbm = Number(level);
    return dbm < 0 && dbm >= -120 ? dbm : null;
  }
  return null;
}
