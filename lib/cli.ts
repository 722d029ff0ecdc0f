#!/usr/bin/env node
// The `dynamoe` executable (package.json "bin"): runs the command line in lib/cli/ and reports its errors.
import { main } from './cli/main';

main(process.argv.slice(2)).catch((error: unknown) => {
  const e = error as Error & { code?: string };
  console.error(`dynamoe: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exitCode = 1;
});
