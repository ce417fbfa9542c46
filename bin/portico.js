#!/usr/bin/env node
// Entry point for `npx portico`: the CLI is TypeScript run by Node's type stripping (Node >= 26).
import '../src/cli/main.ts'
