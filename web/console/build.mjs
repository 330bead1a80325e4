// Builds the console into the store's embedded directory
// (services/store/internal/console/dist): app.js and app.css bundled and
// minified by esbuild, index.html copied. The output depends only on the
// sources and the locked packages (no hashes of time, no source maps), so
// CI can rebuild it and compare with the committed files (decision 0032).
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = "../../services/store/internal/console/dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  platform: "browser",
  charset: "utf8",
  legalComments: "eof",
  outdir: out,
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: { app: "src/style.css" },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: "warning",
});
copyFileSync("index.html", `${out}/index.html`);
