#!/usr/bin/env bash
# podtap end to end on a real cluster, in one command:
#
#   scripts/e2e-kind.sh
#
# builds the image, makes a two-node kind cluster and loads the image into it,
# installs the chart, runs a web server and a client pod, captures the server
# with a SniffPolicy, fetches the pcapng through the collector's HTTP API and
# checks it with tshark, uninstalls, and checks that nothing of podtap is left
# on any node (podtap cleanup --check in a debug pod on each node, and tc/ip
# inside the kind nodes).
#
# Needs: docker, kind, kubectl, helm, tshark, curl.
# Environment:
#   E2E_CLUSTER=kind|current  kind (default) makes and deletes its own cluster;
#                             current uses the kubectl context as it is (the
#                             image must then be pullable: set E2E_IMAGE and
#                             E2E_SKIP_BUILD=1 after pushing it)
#   E2E_IMAGE=podtap:e2e      image reference to build and install
#   E2E_SKIP_BUILD=1          use E2E_IMAGE as it is
#   E2E_KEEP=1                keep the kind cluster (and the install on failure)
#   KIND_NAME=podtap-e2e      name of the kind cluster
# Exit codes: 0 all checks passed, 1 a check failed, 4 a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${E2E_CLUSTER:-kind}
IMAGE=${E2E_IMAGE:-podtap:e2e}
KIND_NAME=${KIND_NAME:-podtap-e2e}
KEEP=${E2E_KEEP:-0}
NS=podtap-system
APP_NS=podtap-e2e
RELEASE=podtap
REQUESTS=20
WORK=$(mktemp -d "${TMPDIR:-/tmp}/podtap-e2e.XXXXXX")
PF_PID=

log() { printf 'e2e: %s\n' "$*" >&2; }
fail() {
  log "FAILED: $*"
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || {
    log "missing tool: $1 ($2)"
    exit 4
  }
}

cleanup() {
  local rc=$?
  if [ -n "$PF_PID" ]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    log "diagnostics:"
    kubectl -n "$NS" get pods -o wide >&2 || true
    kubectl get sniffpolicies -A -o wide >&2 || true
    kubectl -n "$NS" logs -l app.kubernetes.io/component=agent --tail=50 >&2 || true
  fi
  if [ "$CLUSTER" = kind ] && [ "$KEEP" != 1 ]; then
    kind delete cluster --name "$KIND_NAME" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"
need tshark "apt-get install tshark"
need curl "apt-get install curl"
if [ "$CLUSTER" = kind ]; then
  need docker "https://docs.docker.com/engine/install/"
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/"
elif [ "$CLUSTER" != current ]; then
  log "E2E_CLUSTER must be kind or current, not $CLUSTER"
  exit 2
fi

# ---- image and cluster -------------------------------------------------------
if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  need docker "https://docs.docker.com/engine/install/"
  log "building $IMAGE"
  docker build -t "$IMAGE" .
fi

if [ "$CLUSTER" = kind ]; then
  log "creating kind cluster $KIND_NAME (a control plane and a worker)"
  cat >"$WORK/kind.yaml" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
EOF
  kind delete cluster --name "$KIND_NAME" >/dev/null 2>&1 || true
  kind create cluster --name "$KIND_NAME" --config "$WORK/kind.yaml" --wait 120s
  kind load docker-image "$IMAGE" --name "$KIND_NAME"
fi

# ---- install -----------------------------------------------------------------
repo=${IMAGE%:*}
tag=${IMAGE##*:}
if [ "$repo" = "$IMAGE" ]; then tag=latest; fi
log "installing the chart ($repo:$tag)"
helm install "$RELEASE" charts/podtap -n "$NS" --create-namespace \
  --set image.repository="$repo" --set image.tag="$tag" --set image.pullPolicy=IfNotPresent \
  --set agent.mountBpffs=true \
  --wait --timeout 5m
kubectl -n "$NS" rollout status daemonset/podtap-agent --timeout=3m
kubectl -n "$NS" rollout status deployment/podtap-controller --timeout=3m
kubectl -n "$NS" rollout status deployment/podtap-collector --timeout=3m

# ---- two pods and a policy ---------------------------------------------------
log "starting a web server and a client"
kubectl create namespace "$APP_NS" --dry-run=client -o yaml | kubectl apply -f -
cat <<EOF | kubectl apply -f -
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: $APP_NS, labels: {app: web}}
spec:
  containers:
    - name: web
      image: $IMAGE
      imagePullPolicy: IfNotPresent
      command: [node, -e, "require('node:http').createServer((q, s) => s.end('hello from web\\\\n')).listen(8080)"]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $APP_NS, labels: {app: client}}
spec:
  containers:
    - name: client
      image: $IMAGE
      imagePullPolicy: IfNotPresent
      command: [sleep, infinity]
EOF
kubectl -n "$APP_NS" wait --for=condition=Ready pod/web pod/client --timeout=3m
WEB_IP=$(kubectl -n "$APP_NS" get pod web -o jsonpath='{.status.podIP}')

log "capturing app=web in $APP_NS"
cat <<EOF | kubectl apply -f -
apiVersion: podtap.io/v1alpha1
kind: SniffPolicy
metadata: {name: web, namespace: $APP_NS}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  collector:
    service: {name: podtap-collector, namespace: $NS}
  limits: {duration: 10m}
EOF
kubectl -n "$APP_NS" wait --for=condition=Ready sniffpolicy/web --timeout=3m
kubectl -n "$APP_NS" get sniffpolicy web -o wide

log "sending $REQUESTS HTTP requests from client to web ($WEB_IP)"
kubectl -n "$APP_NS" exec client -- node -e "
  (async () => {
    for (let i = 0; i < $REQUESTS; i++) {
      const r = await fetch('http://$WEB_IP:8080/' + i);
      if ((await r.text()) !== 'hello from web\n') process.exit(1);
    }
  })().catch(() => process.exit(1));"
sleep 5 # a report interval: the counters reach the policy's status
kubectl -n "$APP_NS" get sniffpolicy web -o wide

# ---- fetch the capture through the collector's HTTP API ----------------------
log "fetching the pcapng through the collector's HTTP API"
TOKEN=$(kubectl -n "$NS" get secret podtap-collector-token -o jsonpath='{.data.api-token}' | base64 -d)
kubectl -n "$NS" port-forward svc/podtap-collector 18080:8080 >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
for _ in $(seq 1 50); do
  curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
api() { curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18080$1"; }
# the API refuses a request without the token
if curl -fsS "http://127.0.0.1:18080/api/v1/captures" >/dev/null 2>&1; then fail "the collector API answered without its token"; fi
api "/api/v1/captures?namespace=$APP_NS&policy=web" >"$WORK/captures.json"
mapfile -t files < <(grep -o '"path": *"[^"]*"' "$WORK/captures.json" | sed 's/.*"path": *"\([^"]*\)"/\1/')
[ "${#files[@]}" -gt 0 ] || fail "no capture file for policy $APP_NS/web: $(cat "$WORK/captures.json")"
n=0
for f in "${files[@]}"; do
  n=$((n + 1))
  api "/api/v1/captures/$f" >"$WORK/capture-$n.pcapng"
done

# ---- check it with tshark ----------------------------------------------------
requests=0
responses=0
for f in "$WORK"/capture-*.pcapng; do
  tshark -r "$f" -q >/dev/null 2>&1 || fail "tshark cannot read $f"
  r=$(tshark -r "$f" -Y "http.request and ip.dst == $WEB_IP" -T fields -e frame.number | wc -l)
  s=$(tshark -r "$f" -Y "http.response and ip.src == $WEB_IP" -T fields -e frame.number | wc -l)
  requests=$((requests + r))
  responses=$((responses + s))
  tshark -r "$f" -T fields -e frame.interface_name 2>/dev/null | sort -u | sed 's/^/e2e: interface: /' >&2
done
log "capture: $requests HTTP requests to web, $responses responses"
[ "$requests" -ge "$REQUESTS" ] || fail "expected at least $REQUESTS requests in the capture, found $requests"
[ "$responses" -ge "$REQUESTS" ] || fail "expected at least $REQUESTS responses in the capture, found $responses"
grep -q "$APP_NS/web" < <(for f in "$WORK"/capture-*.pcapng; do tshark -r "$f" -T fields -e frame.interface_name; done) ||
  fail "no interface named $APP_NS/web in the capture"
kill "$PF_PID" 2>/dev/null || true
PF_PID=

# ---- uninstall, and nothing left on the nodes --------------------------------
mapfile -t nodes < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
log "uninstalling (the pre-delete hook lets every agent detach first)"
kubectl -n "$APP_NS" delete sniffpolicy web --wait=false
helm uninstall "$RELEASE" -n "$NS" --wait --timeout 5m
kubectl -n "$NS" wait --for=delete pod -l app.kubernetes.io/component=agent --timeout=3m || true

# The image runs as a non-root user; podtap cleanup needs root.
printf '{"securityContext": {"runAsUser": 0, "runAsGroup": 0}}\n' >"$WORK/debug-root.json"
left=0
for node in "${nodes[@]}"; do
  log "checking node $node with podtap cleanup --check"
  out=$(kubectl debug "node/$node" -n default --profile=sysadmin --image="$IMAGE" --image-pull-policy=IfNotPresent --attach=false \
    --custom="$WORK/debug-root.json" \
    -- env PODTAP_PIN_ROOT=/host/sys/fs/bpf/podtap podtap cleanup --check 2>&1) || fail "kubectl debug node/$node: $out"
  pod=$(printf '%s\n' "$out" | sed -n 's/.*Creating debugging pod \([^ ]*\) .*/\1/p')
  [ -n "$pod" ] || fail "no debug pod in: $out"
  kubectl -n default wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=2m >/dev/null 2>&1 || true
  kubectl -n default logs "pod/$pod" | sed "s/^/e2e: $node: /" >&2
  phase=$(kubectl -n default get "pod/$pod" -o jsonpath='{.status.phase}')
  kubectl -n default delete "pod/$pod" --wait=false >/dev/null
  if [ "$phase" != Succeeded ]; then
    log "node $node: podtap cleanup --check reports leftovers (pod $phase)"
    left=1
  fi
  if [ "$CLUSTER" = kind ]; then
    # the same, with the node's own tools
    found=$(docker exec "$node" sh -c '
      ls /sys/fs/bpf/podtap 2>/dev/null
      ip -o link show | grep -E " pt[cp][a-z0-9]+[@:]"
      for d in $(ls /sys/class/net); do tc filter show dev "$d" ingress; tc filter show dev "$d" egress; done 2>/dev/null | grep -E "pt_(tap|tunnel|emit)"
      true')
    if [ -n "$found" ]; then
      log "node $node still has: $found"
      left=1
    fi
  fi
done
[ "$left" -eq 0 ] || fail "podtap left programs, pins or devices on a node after uninstall"
if [ -n "$(kubectl get clusterroles,clusterrolebindings,priorityclasses -l app.kubernetes.io/instance=$RELEASE -o name)" ]; then
  fail "cluster-scoped objects of the release are left"
fi
log "all checks passed"
