# Build: the release binaries. Queries are checked at run time, so no
# database (and no SQLX_OFFLINE data) is needed here.
FROM rust:1-bookworm AS build
WORKDIR /src
# The dependencies first, as a layer of their own: a change to regsync's
# source rebuilds regsync, not its dependencies.
COPY Cargo.toml Cargo.lock ./
COPY crates/regsync-sim/Cargo.toml crates/regsync-sim/
COPY crates/regsync-bench/Cargo.toml crates/regsync-bench/
RUN mkdir -p src crates/regsync-sim/src crates/regsync-bench/src \
    && for f in src/main.rs crates/regsync-sim/src/main.rs crates/regsync-bench/src/main.rs; do echo 'fn main() {}' > "$f"; done \
    && touch src/lib.rs crates/regsync-sim/src/lib.rs \
    && cargo build --release --locked -p regsync -p regsync-sim \
    && rm -rf src crates/regsync-sim/src crates/regsync-bench/src
COPY src src
COPY crates crates
COPY migrations migrations
# The daemon without features (no simulator, no crash points) and, for
# `docker compose up`, the simulator as its own binary.
RUN touch src/main.rs src/lib.rs crates/regsync-sim/src/main.rs crates/regsync-sim/src/lib.rs \
    && cargo build --release --locked -p regsync -p regsync-sim

# Run: a small image, an unprivileged user, health checked on /healthz.
# No volume: every bit of regsync's state is in PostgreSQL.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app regsync
WORKDIR /app
COPY --from=build /src/target/release/regsync /src/target/release/regsync-sim /usr/local/bin/
COPY config/default.toml config/default.toml
USER regsync
ENV REGSYNC__SERVER__LISTEN=0.0.0.0:9090
# 9090: /healthz, /readyz, /metrics of `regsync run`. (The same image runs
# `regsync-sim`, which listens where --listen says: 8080 in compose.)
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["regsync"]
CMD ["run"]
