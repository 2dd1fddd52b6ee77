import { describe, expect, it } from "vitest";
import { BootCheckPlugin } from "./index.js";

describe("@fledge/plugin-bootcheck options", () => {
  it("takes the [check] keys", () => {
    expect(new BootCheckPlugin({ boot_budget_ms: 5000, size_budget_mb: 1.5, marker: "ready", timeout_ms: 60000, kernel: "/boot/vmlinuz" }).options.boot_budget_ms).toBe(5000);
    expect(new BootCheckPlugin().options).toEqual({});
  });

  it("refuses an unknown key or a bad value, naming the plugin and the option", () => {
    expect(() => new BootCheckPlugin({ boot_budget: 5 } as never)).toThrow("@fledge/plugin-bootcheck: option boot_budget is not an option");
    expect(() => new BootCheckPlugin({ boot_budget_ms: 0 })).toThrow("boot_budget_ms must be a whole number above 0");
    expect(() => new BootCheckPlugin({ boot_budget_ms: 1.5 })).toThrow("boot_budget_ms must be a whole number above 0");
    expect(() => new BootCheckPlugin({ size_budget_mb: -1 })).toThrow("size_budget_mb must be a number above 0");
    expect(() => new BootCheckPlugin({ marker: " " })).toThrow("marker must be a non-empty string");
  });
});
