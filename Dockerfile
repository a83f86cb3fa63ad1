# b24-robot: one binary, one volume for its store.
#   docker build -t b24-robot .
#   docker run -d -p 8080:8080 -v b24-data:/data -v $PWD/rules:/app/rules:ro \
#     -e B24ROBOT__PORTAL__WEBHOOK_URL=https://<portal>/rest/<user>/<code>/ \
#     -e B24ROBOT__PORTAL__APPLICATION_TOKEN=<outgoing webhook token> b24-robot

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change in the sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY rules ./rules
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
# ca-certificates: the REST client verifies the portal's certificate with the system store.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app --shell /usr/sbin/nologin b24robot \
    && mkdir -p /app/rules /data && chown b24robot /data
COPY --from=build /src/target/release/b24-robot /usr/local/bin/b24-robot
COPY rules /app/rules
WORKDIR /app
USER b24robot
ENV B24ROBOT__SERVER__LISTEN=0.0.0.0:8080 \
    B24ROBOT__STORAGE__DIR=/data \
    B24ROBOT__RULES__DIR=/app/rules \
    B24ROBOT__LOG__FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["b24-robot", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["b24-robot"]
CMD ["serve"]
