// The dashboard's build (run by bin/build.js) and its dev server (`npx vite web`,
// docs/dashboard.md): the dev server answers the pages and hands /v1 to a
// running `paddock serve`, so the browser sees one origin, as in production.
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const api = process.env['PADDOCK_DEV_API'] ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Inline scripts are refused by the pages' CSP; modern browsers preload modules themselves.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/v1': { target: api, changeOrigin: false },
      '/docs': { target: api },
    },
  },
});
