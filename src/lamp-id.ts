import { existsSync, readdirSync, readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import path from "node:path";

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function usable(mac: string | undefined): mac is string {
  return mac !== undefined && MAC.test(mac) && mac !== "00:00:00:00:00:00";
}

/**
 * The MAC of the first network device by name (eth0 before wlan0), read from sysfs whatever the link's
 * state. Only devices (a `device` link): bridges, veth, docker0 and lo are not the board's. Not from
 * os.networkInterfaces(): it lists an interface only once it has an address, so a Pi starting before its
 * Wi-Fi associates, or given a cable later, would change its id, and with it every topic.
 */
function firstDeviceMac(netDir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(netDir).sort();
  } catch {
    return undefined;
  }
  for (const name of names) {
    try {
      if (!existsSync(path.join(netDir, name, "device"))) continue;
      const mac = readFileSync(path.join(netDir, name, "address"), "utf8").trim();
      if (usable(mac)) return mac;
    } catch {
      // A device that vanished while we looked: the next one will do.
    }
  }
  return undefined;
}

/** Where there is no sysfs (macOS, a container without it): the first interface with an address. */
function firstAddressMac(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (!address.internal && usable(address.mac)) return address.mac;
    }
  }
  return undefined;
}

/**
 * The default LAMP_ID: the board's MAC without colons, as LAMPI's device id, else the host name. Stable
 * across boots and network changes, since topics, Home Assistant's entity and the clients all hang on it.
 */
export function defaultLampId(sysfsRoot = "/sys"): string {
  const mac = firstDeviceMac(path.join(sysfsRoot, "class", "net")) ?? firstAddressMac();
  if (mac) return mac.toLowerCase().replaceAll(":", "");
  return (
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 64) || "lamp"
  );
}
