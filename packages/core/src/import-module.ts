import { Script, constants } from "node:vm";

type Importer = (url: string) => Promise<Record<string, unknown>>;
let importer: Importer | undefined;

/** True inside a single executable application (fledge's one-file executable). */
function inSea(): boolean {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  try {
    return !!(get?.("node:sea") as { isSea?: () => boolean } | undefined)?.isSea?.();
  } catch {
    return false;
  }
}

/**
 * `import(url)` that also works inside fledge's one-file executable, whose main script may only
 * import Node's built-in modules: there it goes through a `vm.Script` compiled with the main
 * context's default ESM loader (`vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER`, Node ≥ 21.7).
 */
export function importModule(url: string): Promise<Record<string, unknown>> {
  if (!importer) {
    if (inSea()) {
      importer = new Script("(url) => import(url)", { importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER }).runInThisContext() as Importer;
    } else importer = (u) => import(u) as Promise<Record<string, unknown>>;
  }
  return importer(url);
}
