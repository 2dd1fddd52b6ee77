#!/usr/bin/env node
import { main } from "./index.js";

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`fledge: internal error: ${(err as Error)?.stack ?? err}\n`);
    process.exitCode = 70;
  },
);
