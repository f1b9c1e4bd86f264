// Copies the built module (dist/*.js) into the Python package, which serves it at
// /client/<name>.js; files of an older build that no longer exist are removed.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "..", "dist");
const shipped = path.join(here, "..", "..", "..", "lightweight_charts_pro_backend", "client_js", "module");

mkdirSync(shipped, { recursive: true });
const built = readdirSync(dist).filter((name) => name.endsWith(".js"));
for (const name of readdirSync(shipped)) {
  if (name.endsWith(".js") && !built.includes(name)) rmSync(path.join(shipped, name));
}
for (const name of built) copyFileSync(path.join(dist, name), path.join(shipped, name));
console.log(`shipped ${built.length} modules to ${path.relative(process.cwd(), shipped)}`);
