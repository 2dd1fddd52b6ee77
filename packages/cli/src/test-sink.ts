import type { CliIO } from "./io.js";

/**
 * A stand-in for stdout/stderr in the CLI's tests: it collects what is written. Only `write`,
 * `isTTY` and `columns` are there, which is all the CLI uses of its streams.
 */
export function sink(opts: { tty?: boolean; columns?: number } = {}): { stream: CliIO["stdout"]; text: () => string } {
  let text = "";
  const stream = {
    write: (s: string) => {
      text += s;
      return true;
    },
    isTTY: opts.tty ?? false,
    ...(opts.columns === undefined ? {} : { columns: opts.columns }),
  };
  return { stream: stream as unknown as CliIO["stdout"], text: () => text };
}
