# One image for every role: `agentyard api`, `agentyard worker agent`, `agentyard scripted-llm`, ...
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p agentyard-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/agentyard /usr/local/bin/agentyard
ENTRYPOINT ["agentyard"]
