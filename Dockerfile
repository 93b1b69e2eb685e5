# One image per preset: `docker build --build-arg PRESET=payments-service -t cleave-payments .`
# PRESET is one of monolith (the default), gateway, users-service, catalog-service,
# orders-service, payments-service, notifications-service (see docs/configuration.md, Build features).

FROM rust:1.95-bookworm AS build
ARG PRESET=monolith
WORKDIR /src
COPY . .
# The cargo registry and the target directory are cached between builds of any preset.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cleave --bin cleave --no-default-features --features "$PRESET" \
 && cp target/release/cleave /cleave

# The runtime: glibc and nothing else (no shell, no package manager), as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cleave /usr/local/bin/cleave
ENV CLEAVE_SERVER__ADDR=0.0.0.0:8080 \
    CLEAVE_DATA_DIR=/data \
    CLEAVE_LOG__FORMAT=json
# 8080: the public API and /health/*, /metrics; 9080: the internal module wire (HTTP), when
# CLEAVE_SERVER__INTERNAL_ADDR is set.
EXPOSE 8080 9080
VOLUME ["/data"]
USER nonroot
ENTRYPOINT ["/usr/local/bin/cleave"]
CMD ["serve"]
