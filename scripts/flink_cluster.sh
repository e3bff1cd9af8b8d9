#!/usr/bin/env bash
# A standalone Flink session cluster on this machine: one JobManager and one TaskManager with
# 2 task slots, each its own Java process, from the Flink distribution that
# `bash scripts/setup.sh --with-flink` caches (PyPI's apache-flink-libraries carries it).
#
#   bash scripts/flink_cluster.sh start    # REST API and web UI on localhost:$FLINK_REST_PORT
#   bash scripts/flink_cluster.sh status   # the cluster's /overview, or why there is none
#   bash scripts/flink_cluster.sh stop     # stops both processes by their pids
#
# Settings (environment): FLINK_REST_PORT (8081), FLINK_RPC_PORT (6123), FLINK_CLUSTER_DIR (its
# config, logs and pid files; ~/.cache/tfx_poets/flink/cluster), FLINK_HOME (the cached
# distribution). The bin/ scripts of a Flink download are not in the PyPI package, so this
# starts the two entry points itself, with the JVM memory settings that Flink's own
# BashJavaUtils computes, as those scripts do.
set -euo pipefail

FLINK_VERSION="${FLINK_VERSION:-1.19.3}"
CACHE_DIR="${TFX_POETS_CACHE_DIR:-$HOME/.cache/tfx_poets}/flink"
FLINK_HOME="${FLINK_HOME:-$CACHE_DIR/flink-$FLINK_VERSION}"
CLUSTER_DIR="${FLINK_CLUSTER_DIR:-$CACHE_DIR/cluster}"
REST_PORT="${FLINK_REST_PORT:-8081}"
RPC_PORT="${FLINK_RPC_PORT:-6123}"
SLOTS=2
CONF_DIR="$CLUSTER_DIR/conf"
LOG_DIR="$CLUSTER_DIR/log"
PROG="flink_cluster.sh"

die() { echo "$PROG: error: $*" >&2; exit 1; }

# Flink 1.19 on Java 17 needs these modules opened (the list of Flink's default config.yaml).
JAVA_OPENS="--add-exports=java.base/sun.net.util=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED
--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.net=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=java.base/java.text=ALL-UNNAMED
--add-opens=java.base/java.time=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED"

overview() { curl -sf --max-time 3 "http://localhost:$REST_PORT/overview"; }
answers() { overview >/dev/null; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  mkdir -p "$CONF_DIR" "$LOG_DIR"
  # Small enough for a 2-core, 24 GiB machine that also runs the pipeline's Python workers.
  cat > "$CONF_DIR/config.yaml" <<EOF
jobmanager:
  rpc: {address: localhost, port: $RPC_PORT}
  bind-host: localhost
  memory: {process: {size: 1024m}}
taskmanager:
  host: localhost
  bind-host: localhost
  numberOfTaskSlots: $SLOTS
  memory: {process: {size: 2048m}}
rest:
  port: $REST_PORT
  address: localhost
  bind-address: localhost
parallelism: {default: 1}
EOF
  cp "$FLINK_HOME/conf/log4j.properties" "$CONF_DIR/" 2>/dev/null || cat > "$CONF_DIR/log4j.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
EOF
}

classpath() {
  local jars
  jars="$(find "$FLINK_HOME/lib" -name '*.jar' ! -name 'flink-dist*' | sort | tr '\n' ':')"
  echo "${jars}$(ls "$FLINK_HOME"/lib/flink-dist*.jar)"
}

# JVM and dynamic settings for one process, computed by Flink (BashJavaUtils) from the config.
resource_params() {  # resource_params GET_JM_RESOURCE_PARAMS|GET_TM_RESOURCE_PARAMS
  java -cp "$FLINK_HOME/bin/bash-java-utils.jar:$(classpath)" \
    org.apache.flink.runtime.util.bash.BashJavaUtils "$1" --configDir "$CONF_DIR" 2>/dev/null \
    | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

start_process() {  # start_process NAME MAIN_CLASS PARAMS_COMMAND
  local name="$1" main="$2" params jvm dynamic
  params="$(resource_params "$3")"
  jvm="$(echo "$params" | sed -n 1p)"
  dynamic="$(echo "$params" | sed -n 2p)"
  [ -n "$jvm" ] || die "Flink could not size the $name's memory from $CONF_DIR/config.yaml"
  # setsid: the process outlives this script and is stopped by its pid alone.
  # shellcheck disable=SC2086  # the JVM options are words
  setsid java $jvm $JAVA_OPENS \
    -Dlog.file="$LOG_DIR/$name.log" -Dlog4j.configurationFile="file:$CONF_DIR/log4j.properties" \
    -classpath "$(classpath)" "$main" --configDir "$CONF_DIR" $dynamic \
    > "$LOG_DIR/$name.out" 2>&1 < /dev/null &
  echo $! > "$CLUSTER_DIR/$name.pid"
}

wait_for() {  # wait_for DESCRIPTION SECONDS TEST_COMMAND...
  local what="$1" seconds="$2"; shift 2
  for _ in $(seq "$seconds"); do
    if "$@"; then return 0; fi
    sleep 1
  done
  "$0" stop >/dev/null 2>&1 || true
  die "$what did not happen within ${seconds} s; see $LOG_DIR"
}

slots_ready() { overview | grep -q "\"slots-total\":$SLOTS"; }

start() {
  [ -f "$(ls "$FLINK_HOME"/lib/flink-dist*.jar 2>/dev/null | head -1)" ] \
    || die "no Flink distribution in $FLINK_HOME; run \`bash scripts/setup.sh --with-flink\`"
  command -v java >/dev/null || die "java not found; Flink needs Java 11 or 17"
  if alive "$CLUSTER_DIR/jobmanager.pid" || alive "$CLUSTER_DIR/taskmanager.pid"; then
    die "a cluster is already running from $CLUSTER_DIR (\`bash scripts/flink_cluster.sh stop\`)"
  fi
  if overview >/dev/null 2>&1 || (exec 3<>"/dev/tcp/localhost/$REST_PORT") 2>/dev/null; then
    die "port $REST_PORT is taken; set FLINK_REST_PORT to a free port"
  fi
  write_config
  start_process jobmanager org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint \
    GET_JM_RESOURCE_PARAMS
  wait_for "the JobManager's REST API on localhost:$REST_PORT" 90 answers
  start_process taskmanager org.apache.flink.runtime.taskexecutor.TaskManagerRunner \
    GET_TM_RESOURCE_PARAMS
  wait_for "the TaskManager's registration with $SLOTS slots" 90 slots_ready
  echo "$PROG: Flink $FLINK_VERSION session cluster on http://localhost:$REST_PORT" \
    "(JobManager pid $(cat "$CLUSTER_DIR/jobmanager.pid"), TaskManager pid" \
    "$(cat "$CLUSTER_DIR/taskmanager.pid"), $SLOTS slots; logs $LOG_DIR)"
}

stop() {
  local stopped=""
  for name in taskmanager jobmanager; do
    local pid_file="$CLUSTER_DIR/$name.pid"
    [ -f "$pid_file" ] || continue
    local pid; pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
      stopped="$stopped $name (pid $pid)"
    fi
    rm -f "$pid_file"
  done
  echo "$PROG: stopped${stopped:- nothing: no cluster was running from $CLUSTER_DIR}"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) overview && echo || die "no Flink cluster answers on localhost:$REST_PORT" ;;
  *) echo "usage: bash scripts/flink_cluster.sh start|stop|status" >&2; exit 2 ;;
esac
