#!/usr/bin/env node
// The `fledge` command as npm links it. This file is committed (dist/ is not), so `npm ci` links
// node_modules/.bin/fledge before anything is built. Plain CommonJS that any Node can parse: it
// checks the Node version against package.json's `engines`, then loads the built CLI.
"use strict";
var path = require("path");
var fs = require("fs");
var url = require("url");
var pkg = require("../package.json");

var floor = /(\d+)\.(\d+)\.(\d+)/.exec(pkg.engines.node).slice(1).map(Number);
var have = process.versions.node.split(".").map(Number);
var ok = have[0] !== floor[0] ? have[0] > floor[0] : have[1] !== floor[1] ? have[1] > floor[1] : have[2] >= floor[2];
if (!ok) {
  process.stderr.write(
    "fledge: needs Node " +
      floor.join(".") +
      " or newer (engines: " +
      pkg.engines.node +
      "); this is Node " +
      process.versions.node +
      " at " +
      process.execPath +
      ".\n" +
      "  Install a newer Node (https://nodejs.org), or use the one-file executable, which brings its own.\n",
  );
  process.exit(1);
}

var built = path.join(__dirname, "..", "dist", "bin.js");
if (!fs.existsSync(built)) {
  process.stderr.write("fledge: the CLI is not built yet: " + built + " is missing.\n  Run `npm run build` in the repository first.\n");
  process.exit(1);
}
import(url.pathToFileURL(built).href).catch(function (err) {
  process.stderr.write("fledge: internal error: cannot load " + built + ":\n" + ((err && err.stack) || err) + "\n");
  process.exit(70);
});
