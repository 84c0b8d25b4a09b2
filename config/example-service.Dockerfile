# syntax=docker/dockerfile:1
# The tailrace-log example service (logging-lib/examples/service.rs) as a static binary on
# distroless, uid 65532, with the `otlp` feature (spans over OTLP/HTTP when
# OTEL_EXPORTER_OTLP_ENDPOINT is set). The compose demo runs it as `shop` and `inventory`.
# From the repo root:
#
#   docker build -f config/example-service.Dockerfile -t tailrace-example-service .

FROM rust:1.95-alpine AS builder
# musl's headers and crt files: ring (rustls, a dev-dependency of the example) compiles C.
# Unpinned: the rust:1.95-alpine tag fixes the Alpine release they come from.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev binutils
WORKDIR /src

# Dependencies (the example's are tailrace-log's dev-dependencies) in a layer of their own,
# reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY logging-lib/Cargo.toml logging-lib/
COPY shipper/Cargo.toml shipper/
COPY tests/Cargo.toml tests/
COPY tests/loki-double/Cargo.toml tests/loki-double/
RUN for lib in logging-lib shipper tests tests/loki-double; do \
        mkdir -p "$lib/src" && : > "$lib/src/lib.rs"; \
    done \
    && mkdir -p logging-lib/examples && echo 'fn main() {}' > logging-lib/examples/service.rs \
    && cargo build --release --locked -p tailrace-log --features http,otlp --example service

COPY logging-lib logging-lib
RUN touch logging-lib/src/lib.rs logging-lib/examples/service.rs \
    && cargo build --release --locked -p tailrace-log --features http,otlp --example service \
    && readelf -l target/release/examples/service > /tmp/program-headers \
    && if grep -q 'program interpreter' /tmp/program-headers; then \
           echo "service is dynamically linked" >&2; exit 1; \
       fi \
    && install -D -m 0755 target/release/examples/service /out/usr/local/bin/service \
    && mkdir -p /out/volumes/logs

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/usr/local/bin/service /usr/local/bin/service
# /logs owned by the runtime user: a named volume mounted there (LOG_FILE=/logs/...) starts
# as a copy of it and is writable without a chown.
COPY --from=builder --chown=65532:65532 /out/volumes/ /
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No shell or curl: `service healthcheck` GETs its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/service"]
