# roster-sync container image.
#
#   docker build --platform linux/amd64 -t registry.example.org/roster-sync:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages. The build stage compiles one statically linked binary for
# x86_64-unknown-linux-musl. The final stage is `scratch`: the image holds that
# binary and nothing else, so it has no shell, no package manager and no libc to patch.
#
# Why scratch is enough:
# - The binary is static (musl). ring, libgit2 and zlib are compiled in.
# - TLS roots come from webpki-roots, compiled into the binary, so there are no CA files.
# - Timestamps are UTC, so tzdata is not needed. The CronJob's timeZone is evaluated by
#   the controller, not in the pod.
# - Kubernetes mounts /etc/resolv.conf, /etc/hosts and /dev/termination-log into every
#   container. /tmp comes from an emptyDir in k8s-cronjob.yaml.
# - There is no passwd entry. The numeric USER below is all the kernel needs. HOME is set
#   to /tmp by the manifest, and git identity comes from roster-sync's own options.
# To debug, attach a throwaway container to the pod. No shell is needed in this image:
#   kubectl debug -it POD --image=busybox --target=roster-sync

# ---- build ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build

# musl-tools provides x86_64-linux-musl-gcc. The C parts (ring's assembly, vendored
# libgit2, zlib) need it; without it the ring build script fails.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl

WORKDIR /src

# Fetch dependencies in their own layer, so that a change in src/ does not download the
# crates again. `cargo fetch` needs a target to exist, hence the stub main.rs. Only
# fetching happens here (no compiling), so no stale build artefact can mask the real
# sources later. The workspace's other member (the test emulator, a dev-dependency that
# a release build never compiles) only needs its manifest and an empty library to load.
COPY Cargo.toml Cargo.lock ./
COPY bench/emulator/Cargo.toml bench/emulator/
RUN mkdir -p src bench/emulator/src && echo 'fn main() {}' > src/main.rs \
 && touch bench/emulator/src/lib.rs \
 && cargo fetch --locked --target x86_64-unknown-linux-musl \
 && rm -rf src

COPY src ./src
# --locked: build exactly the reviewed Cargo.lock and fail if it is out of date.
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p roster-sync \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/roster-sync /out/roster-sync

# ---- runtime -------------------------------------------------------------------------
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
# OCI annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
LABEL org.opencontainers.image.title="roster-sync" \
      org.opencontainers.image.description="Sync UC Berkeley course rosters into JupyterHub profile files, with a git audit trail" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="scratch"

COPY --from=build /out/roster-sync /roster-sync

# Same uid/gid as the z2jh hub (1000:1000). Roster files and the audit repository then
# have the hub's owner, and libgit2's repository-owner check passes on a repo this uid
# created. The manifest sets the same ids and runAsNonRoot.
USER 1000:1000

# Exec form: roster-sync is PID 1 and receives SIGTERM itself. It installs its own
# handler, exits 6 and leaves the state consistent, so no init process is needed.
ENTRYPOINT ["/roster-sync"]
CMD ["sync"]
