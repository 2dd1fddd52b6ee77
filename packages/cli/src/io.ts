/** Where the CLI writes; swapped in tests. */
export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The terminal's input, for commands that attach a console (fledge run); lazy, so other commands never open it. */
  stdin?: () => NodeJS.ReadableStream & { isTTY?: boolean };
}

/** Thrown by commands to exit with a code; the message (if any) is printed by main. */
export class ExitError extends Error {
  override name = "ExitError";
  constructor(
    readonly exitCode: number,
    message = "",
  ) {
    super(message);
  }
}

/** Usage errors exit 2. */
export class UsageError extends ExitError {
  override name = "UsageError";
  constructor(message: string) {
    super(2, message);
  }
}

export function colors(io: CliIO, stream: CliIO["stdout"]) {
  const on = !!stream.isTTY && !io.env.NO_COLOR && io.env.TERM !== "dumb" && !io.env.CI;
  const c = (code: number) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { red: c(31), yellow: c(33), green: c(32), dim: c(2), bold: c(1), cyan: c(36) };
}
