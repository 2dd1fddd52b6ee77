// tapable is CommonJS: import it through its default export (see STYLE.md, "Pitfalls").
// Types come from `import type * as T from "tapable"` where needed.
import tapable from "tapable";

export const { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, HookMap, SyncBailHook, SyncHook } = tapable;
