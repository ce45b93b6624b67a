// Build the web console into OUT (default ../build/web): index.html, assets/ with content-hashed
// names (immutable, cacheable), and a .gz sibling of every text file for vesseld to serve.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync, constants } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, "..", "build", "web"));
const assets = join(out, "assets");
rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await build({
  entryPoints: { main: join(here, "src", "main.ts") },
  bundle: true,
  splitting: true, // xterm.js is its own chunk, loaded when a terminal opens
  format: "esm",
  target: ["chrome109", "firefox115", "safari16"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  outdir: assets,
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => resolve(p));
const js = outputs.find((p) => /\/main-[^/]+\.js$/.test(p));
const css = outputs.find((p) => /\/main-[^/]+\.css$/.test(p));
if (!js || !css) throw new Error("the build made no main .js or .css");
const html = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("@JS@", relative(assets, js))
  .replace("@CSS@", relative(assets, css));
writeFileSync(join(out, "index.html"), html);

// .gz siblings, and the sizes of what a first load fetches
function walk(d) {
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
let gz = {};
for (const f of walk(out)) {
  if (!/\.(html|js|css|svg|json|txt|map)$/.test(f)) continue;
  const z = gzipSync(readFileSync(f), { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(f + ".gz", z);
  gz[relative(out, f)] = z.length;
}
const first = ["index.html", relative(out, js), relative(out, css)];
// what main imports statically (shared chunks) is part of the first load too
for (const imp of result.metafile.outputs[relative(process.cwd(), js)]?.imports || []) {
  if (imp.kind === "import-statement") first.push(relative(out, resolve(imp.path)));
}
const firstLoad = first.reduce((a, f) => a + (gz[f] || 0), 0);
const all = Object.values(gz).reduce((a, b) => a + b, 0);
const summary = { firstLoadGzipBytes: firstLoad, firstLoadFiles: first, allGzipBytes: all, files: gz };
writeFileSync(join(out, "build-info.json"), JSON.stringify(summary, null, 1) + "\n");
console.log(`build-web: ${out}: first load ${firstLoad} bytes gzip (${first.join(", ")}), all ${all} bytes gzip`);
