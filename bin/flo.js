#!/usr/bin/env node
"use strict";
require("../dist/lib/cli/main.js")
  .main(process.argv)
  .catch((err) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  });
