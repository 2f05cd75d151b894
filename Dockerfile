# Build: the release binaries. Queries are checked at run time, so no
# database (and no SQLX_OFFLINE data) is needed here.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY crates crates
COPY migrations migrations
# The daemon without features (no simulator, no crash points) and, for
# `docker compose up`, the simulator as its own binary.
RUN cargo build --release --locked -p regsync -p regsync-sim

# Run: a small image, an unprivileged user, health checked on /healthz.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app regsync
WORKDIR /app
COPY --from=build /src/target/release/regsync /src/target/release/regsync-sim /usr/local/bin/
COPY config config
USER regsync
ENV REGSYNC__SERVER__LISTEN=0.0.0.0:9090
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["regsync"]
CMD ["run"]
