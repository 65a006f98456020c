import { type MockDriver, mockDriver } from "../../src/drivers/mock.js";
import { driverSuite, type Rig } from "./driver-suite.js";

function mockRig(): Rig {
  const drivers: MockDriver[] = [];
  return {
    module: {
      ...mockDriver,
      create(options) {
        const driver = mockDriver.create(options) as MockDriver;
        drivers.push(driver);
        return driver;
      },
    },
    sysfsRoot: "/nonexistent",
    darkOnClose: false,
    // The mock records logical duties: what the LED shows, whatever the wiring.
    seen: (pin) => drivers.flatMap((d) => d.writes.filter((w) => w.pin === pin).map((w) => w.duty)),
    released: () => true,
    dispose: () => {},
  };
}

driverSuite(
  "mock",
  mockRig,
  [
    { label: "RGB on LAMPI's pins 19, 26, 13", pins: [19, 26, 13] },
    { label: "mono on pin 18", pins: [18] },
  ],
  { dimmable: true },
);
