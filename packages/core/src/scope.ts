/**
 * Objects handed to taps that have a per-plugin view (the context logs under the plugin's
 * name, the tree records the plugin as the origin of what it adds, …) implement this.
 */
export const SCOPE = Symbol("fledge.scope");
/** A `Check` collects a failing check tap's error as a problem instead of stopping the others. */
export const COLLECT = Symbol("fledge.collect");
