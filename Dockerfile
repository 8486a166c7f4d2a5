# syntax=docker/dockerfile:1
# podtap: one image for every role, chosen by the command:
#   podtap controller | podtap agent | podtap collector | podtap cleanup --check
# Build:  docker build -t podtap:$(node -p 'require("./package.json").version') .
# The recipe is exercised without Docker by test/kernel/image.test.ts, which
# runs these steps in a Debian 12 root made with debootstrap.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: TypeScript -> dist/ (the sources import ./x.ts; tsc rewrites them to ./x.js)
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: nothing here needs an install script (the `node` dev
# dependency's would download a second Node.js). --workspaces=false: the
# repository's workspace packages (packages/: the development harness) and
# their dependencies stay out; only the root package is the product.
RUN --mount=type=cache,target=/root/.npm npm ci --workspaces=false --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev --workspaces=false --ignore-scripts --no-audit --no-fund

# ---- runtime: Node.js 24 on Debian 12, and what the agent runs at run time
FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="podtap" \
      org.opencontainers.image.description="Mirror the traffic of selected Kubernetes pods, whole, through an eBPF tunnel into pcapng" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"
# clang compiles the BPF program for each configuration (agent, sniff);
# libbpf-dev and linux-libc-dev are its headers; iproute2 (tc, ip, bridge)
# attaches programs and manages the capture device; bpftool loads and pins;
# util-linux's nsenter enters network namespaces. Nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libbpf-dev linux-libc-dev iproute2 bpftool util-linux \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/podtap
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY bpf/ bpf/
RUN chmod 0755 dist/cli/main.js \
 && ln -s /opt/podtap/dist/cli/main.js /usr/local/bin/podtap \
 && groupadd --system --gid 65532 podtap \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin podtap \
 && mkdir -p /var/cache/podtap/objects /run/podtap \
 && chown 65532:65532 /var/cache/podtap/objects
ENV NODE_ENV=production \
    PODTAP_BPF_DIR=/opt/podtap/bpf \
    PODTAP_CACHE_DIR=/var/cache/podtap/objects
# Non-root by default; the agent's pod runs it as uid 0 with a few capabilities.
USER 65532:65532
ENTRYPOINT ["podtap"]
CMD ["--help"]
