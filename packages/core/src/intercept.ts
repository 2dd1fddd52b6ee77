import { PluginError } from "./errors.js";
import type { FledgeHooks } from "./hooks.js";

type AnyHook = {
  intercept(i: { register?: (tap: any) => any }): void;
};
type AnyHookMap = { intercept(i: { factory?: (key: any, hook: any) => any }): void };

function wrapError(hook: string, plugin: string, err: unknown): unknown {
  if (err instanceof Error && err.name === "PluginError") return err;
  return new PluginError(hook, plugin, err);
}

/** Wraps every tap so a failure names the hook and the plugin it came from. */
function guard(hookName: string, hook: AnyHook, sync: boolean): void {
  hook.intercept({
    register(tap: { type: string; name: string; fn: (...a: any[]) => any }) {
      const fn = tap.fn;
      const name = tap.name;
      if (tap.type === "sync") {
        tap.fn = (...args: any[]) => {
          let result;
          try {
            result = fn(...args);
          } catch (err) {
            throw wrapError(hookName, name, err);
          }
          if (sync && result && typeof (result as Promise<unknown>).then === "function") {
            (result as Promise<unknown>).catch(() => {});
            throw new PluginError(
              hookName,
              name,
              new Error(`hooks.${hookName} is synchronous but the tap returned a promise; its errors would be lost (use tapPromise on an async hook)`),
            );
          }
          return result;
        };
      } else if (tap.type === "promise") {
        tap.fn = async (...args: any[]) => {
          try {
            return await fn(...args);
          } catch (err) {
            throw wrapError(hookName, name, err);
          }
        };
      } else if (tap.type === "async") {
        tap.fn = (...args: any[]) => {
          const cb = args.pop() as (err?: unknown, res?: unknown) => void;
          try {
            fn(...args, (err: unknown, res: unknown) => cb(err ? wrapError(hookName, name, err) : err, res));
          } catch (err) {
            cb(wrapError(hookName, name, err));
          }
        };
      }
      return tap;
    },
  });
}

const SYNC_HOOKS = new Set(["failed", "log", "progress", "compressor"]);

export function guardHooks(hooks: FledgeHooks): void {
  for (const [name, hook] of Object.entries(hooks)) {
    const sync = SYNC_HOOKS.has(name);
    if (typeof (hook as { for?: unknown }).for === "function") {
      (hook as unknown as AnyHookMap).intercept({
        factory: (key, h) => {
          guard(`${name}.for(${JSON.stringify(key)})`, h, sync);
          return h;
        },
      });
    } else {
      guard(name, hook as unknown as AnyHook, sync);
    }
  }
}
