# syntax=docker/dockerfile:1
# Greenlight's API. Two stages: the first installs production dependencies only (no dev
# tools, no typed-client workspace); the second is the runtime, as an unprivileged user.
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step.

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --workspaces=false --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

FROM node:24-slim AS runtime
# Every interface: a published port reaches the container through its own network interface.
ENV NODE_ENV=production \
    GREENLIGHT_ENV=production \
    GREENLIGHT_HOST=0.0.0.0 \
    GREENLIGHT_PORT=4000 \
    GREENLIGHT_GRPC_ADDR=:4001
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root src ./src
COPY --chown=root:root gen ./gen
COPY --chown=root:root migrations ./migrations
# The code is owned by root and read-only to the service; the JWT key directory (EdDSA) and
# any data it writes live in /app/data, the one place it may write.
# Node's compile cache is filled here, at build time, with every module compiled as the
# primary and as a worker runs it: without it each process of every new container would
# strip TypeScript at its start and keep the stripper loaded (src/compile-cache.ts).
ENV NODE_COMPILE_CACHE=/app/compile-cache
RUN mkdir -p /app/data /app/compile-cache && chown node:node /app/data /app/compile-cache
USER node
RUN node bin/greenlight.js compile-cache
EXPOSE 4000 4001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:4000/livez').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/greenlight.js", "serve", "-env", "production", "-db-migrate"]
