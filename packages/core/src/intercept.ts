// biome-ignore-all lint/suspicious/noExplicitAny: taps of every hook pass through here, whatever their arguments and results; tapable types them per hook only
import { PluginError } from "./errors.js";
import { Stage, SYNC_HOOKS, type FledgeHooks } from "./hooks.js";

import { COLLECT, SCOPE } from "./scope.js";

export { COLLECT, SCOPE };

type AnyHook = { intercept(i: { register?: (tap: any) => any }): void };
type AnyHookMap = { intercept(i: { factory?: (key: any, hook: any) => any }): void };

function wrapError(hook: string, plugin: string, err: unknown): unknown {
  if (err instanceof Error && err.name === "PluginError") return err;
  return new PluginError(hook, plugin, err);
}

const thenable = (x: unknown): x is Promise<unknown> => !!x && typeof (x as { then?: unknown }).then === "function";

function scoped(args: unknown[], plugin: string): unknown[] {
  return args.map((a) => (a && typeof a === "object" && typeof (a as Record<symbol, unknown>)[SCOPE] === "function" ? (a as Record<symbol, (p: string) => unknown>)[SCOPE]!(plugin) : a));
}

/**
 * Wraps every tap of a hook: `enforce` becomes a stage; the tap's arguments become the
 * plugin's views; a failure names the hook and the plugin; a promise returned from `.tap()`
 * is an error instead of lost work; in `check`, a failure is collected as a problem.
 */
function guard(hookName: string, hook: AnyHook, sync: boolean, current: () => string | undefined): void {
  const collect = hookName === "check";
  hook.intercept({
    register(tap: { type: string; name: string; fn: (...a: any[]) => any; stage?: number; enforce?: string; plugin?: string }) {
      if (typeof tap.name !== "string" || !tap.name) throw new PluginError(hookName, current() ?? "(unnamed)", new Error(`a tap on hooks.${hookName} has no name`));
      const plugin = current() ?? tap.name;
      tap.plugin = plugin;
      if (tap.enforce !== undefined) {
        if (tap.enforce !== "pre" && tap.enforce !== "post") throw new PluginError(hookName, plugin, new Error(`enforce must be "pre" or "post", got ${JSON.stringify(tap.enforce)}`));
        if (tap.stage === undefined) tap.stage = tap.enforce === "pre" ? Stage.PRE : Stage.POST;
      }
      const fn = tap.fn;
      const fail = (args: unknown[], err: unknown) => {
        const e = wrapError(hookName, plugin, err);
        const sink = collect ? (args[0] as Record<symbol, ((e: unknown, p: string) => void) | undefined>)?.[COLLECT] : undefined;
        if (sink) {
          sink.call(args[0], e, plugin);
          return undefined;
        }
        throw e;
      };
      if (tap.type === "sync") {
        tap.fn = (...args: any[]) => {
          let result;
          try {
            result = fn(...scoped(args, plugin));
          } catch (err) {
            return fail(args, err);
          }
          if (thenable(result)) {
            result.catch(() => {});
            return fail(
              args,
              new Error(
                sync
                  ? `hooks.${hookName} is synchronous, but the tap returned a promise: its work and its errors would be lost (do the work synchronously)`
                  : `the tap on hooks.${hookName} was made with .tap() but returned a promise, which would not be awaited: use tapPromise`,
              ),
            );
          }
          return result;
        };
      } else if (tap.type === "promise") {
        tap.fn = async (...args: any[]) => {
          try {
            return await fn(...scoped(args, plugin));
          } catch (err) {
            return fail(args, err);
          }
        };
      } else if (tap.type === "async") {
        tap.fn = (...args: any[]) => {
          const cb = args.pop() as (err?: unknown, res?: unknown) => void;
          const done = (err: unknown, res?: unknown) => {
            if (!err) return cb(undefined, res);
            try {
              cb(undefined, fail(args, err));
            } catch (e) {
              cb(e);
            }
          };
          try {
            fn(...scoped(args, plugin), done);
          } catch (err) {
            done(err);
          }
        };
      }
      return tap;
    },
  });
}

/** Guards every hook and every hook a HookMap creates. `current` names the plugin being applied. */
export function guardHooks(hooks: FledgeHooks, current: () => string | undefined): void {
  for (const [name, hook] of Object.entries(hooks)) {
    const sync = SYNC_HOOKS.has(name);
    if (typeof (hook as { for?: unknown }).for === "function") {
      (hook as unknown as AnyHookMap).intercept({
        factory: (key, h) => {
          guard(`${name}.for(${JSON.stringify(key)})`, h, sync, current);
          return h;
        },
      });
    } else {
      guard(name, hook as unknown as AnyHook, sync, current);
    }
  }
}
