# syntax=docker/dockerfile:1
# The streamlake image: one binary that is the topic creator, the producer, the streaming job and
# the validator of docker-compose.yml (they differ only by their command).
#
#   docker build -t streamlake:local .
#   docker run --rm streamlake:local --help
#
# Stage 1 builds the release binary. rdkafka's `cmake-build` feature compiles librdkafka from
# source, which needs cmake, a C/C++ compiler, zlib headers and the libcurl headers (librdkafka's
# CMake build includes <curl/curl.h> even with curl disabled); the same packages as
# scripts/test.sh installs. Builder and runtime are the same Debian release, so glibc matches.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake g++ make pkg-config zlib1g-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# Debug info is for local profiling (Cargo.toml); the image keeps symbols for backtraces only.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY dataflows ./dataflows
# The caches keep the crate downloads and the build folder between image builds; the binary is
# copied out of the cached folder, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin streamlake \
    && cp target/release/streamlake /usr/local/bin/streamlake

# Stage 2: a small runtime with the binary and the pipeline definitions. The binary links only
# libc, libm, libgcc_s and zlib (librdkafka is static), all in debian-slim already.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /opt/streamlake --no-create-home streamlake \
    && mkdir -p /opt/streamlake /data/output /etc/streamlake \
    && chown streamlake:streamlake /data/output
COPY --from=builder /usr/local/bin/streamlake /usr/local/bin/streamlake
COPY dataflows /opt/streamlake/dataflows
WORKDIR /opt/streamlake
USER streamlake
# The same variable names as the original platform; compose sets the rest.
ENV OUTPUT_PATH=/data/output/parquet \
    RUN_ID=local_run \
    NO_COLOR=1
# timely's cluster port (hostfile lines are host:2101)
EXPOSE 2101
ENTRYPOINT ["streamlake"]
CMD ["--help"]
