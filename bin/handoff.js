#!/usr/bin/env node
// Baseline-compile every function on first call: the dump runs most of its code exactly once,
// while the target is frozen, and interpreting it cold roughly doubled the frozen time.
import { setFlagsFromString } from 'node:v8';
setFlagsFromString('--always-sparkplug');
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).then((code) => { process.exitCode = code; });
