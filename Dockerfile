# findashpro's container image: the `fdp` binary and the migrations, on Debian, as a non-root user.
# Build: docker build -t findashpro:dev .    (see deploy/README.md)
# The toolchain matches ../BUILD.md's (Rust 1.95); Debian bookworm, as the machines the tests run on.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
# The commit run folders name (run.json); the context has no .git:
# docker build --build-arg FDP_GIT_COMMIT="$(git rev-parse HEAD)" ...
ARG FDP_GIT_COMMIT=unknown
ENV FDP_GIT_COMMIT=${FDP_GIT_COMMIT}
WORKDIR /src
# Manifests first: the dependency layer is rebuilt only when they change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin fdp \
    && strip target/release/fdp

# Operators' image for `fdp backup` and `fdp restore`: the binary with PostgreSQL's and Redis's
# client tools (docker build --target backup -t findashpro-backup:dev .).
FROM debian:${DEBIAN}-slim AS backup
# Debian's point releases replace package versions; pinning them would break the build at the
# next security update. The base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-15 redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fdp --create-home fdp
ENV PATH="/usr/lib/postgresql/15/bin:${PATH}"
COPY --from=build /src/target/release/fdp /usr/local/bin/fdp
USER 10001:10001
WORKDIR /var/lib/fdp
ENTRYPOINT ["/usr/local/bin/fdp"]
CMD ["backup", "--help"]

# The runtime image (the default target): the binary, the migrations for reference (they are
# also compiled into the binary, which applies them), CA certificates for the providers' and
# brokers' HTTPS, and nothing else.
FROM debian:${DEBIAN}-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fdp --create-home fdp \
    && install -d -o fdp -g fdp /var/lib/fdp/data /var/lib/fdp/runs
# A named volume mounted on data/ or runs/ starts with these owners.
COPY --from=build /src/target/release/fdp /usr/local/bin/fdp
COPY migrations /usr/share/findashpro/migrations
USER 10001:10001
WORKDIR /var/lib/fdp
# 9184: `fdp run --metrics-addr` (/metrics, /healthz, /readyz); 8501: `fdp serve`; 2101: timely's
# process-to-process port in cluster mode.
EXPOSE 9184 8501 2101
ENTRYPOINT ["/usr/local/bin/fdp"]
CMD ["--help"]
