#!/usr/bin/env bash
# podtap end to end on a real single-node Kubernetes cluster built from
# upstream sources (scripts/cluster.sh), for each pod network layout, on one
# cluster whose layout is switched between them (scripts/cluster.sh layout):
#
#   scripts/e2e.sh [--layout bridge|ptp]... [--keep]     (default: both layouts)
#
# For each layout: helm install of charts/podtap with the locally built image
# -> Ready -> a SniffPolicy -> real pod traffic (TCP bulk with GSO, a
# 65507-byte UDP datagram, 65507-byte pings, IPv6) -> the collector's pcapng
# holds every frame tcpdump saw on the pod's host veth, byte for byte (tshark
# reads both), and the collector counted no loss -> kubectl get sniffpolicies
# counts and Ready -> kubectl podtap capture streams live -> policy delete
# detaches -> helm uninstall leaves nothing of podtap on the node.
# On the first layout also what does not depend on it: the install refused
# without a StorageClass, invalid policies refused by the API server, the
# agent's ServiceAccount unable to list pods cluster-wide or read Secrets,
# helm upgrade keeps capturing.
# Then: a policy left attached and cluster.sh down without an uninstall ->
# nothing left on the machine (the agent's pins included).
#
# Exit codes: 0 all checks passed, 1 a check failed, 2 usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

layouts=()
keep=false
while [ $# -gt 0 ]; do
  case $1 in
    --layout) layouts+=("${2:?--layout needs bridge or ptp}"); shift 2 ;;
    --layout=*) layouts+=("${1#*=}"); shift ;;
    --keep) keep=true; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#layouts[@]} -gt 0 ] || layouts=(bridge ptp)

NS=podtap-system
APP=podtap-e2e
RELEASE=podtap
NETNS=/run/netns/podtap-node
WORK=$(mktemp -d "${TMPDIR:-/tmp}/podtap-e2e.XXXXXXXXXX")
TCPDUMP_PID=
TAIL_PID=
# true once this run starts the cluster: stopped while waiting for another
# run's lock, it must not take that run's cluster down
CLUSTER_OURS=false

log() { printf '%s e2e[%s]: %s\n' "$(date +%H:%M:%S)" "${LAYOUT:-}" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
# A command that fails outside a check (set -e ends the run) names itself
# too: the diagnostics that follow are long, and CI shows the failure line
# and the lines before it (scripts/test.sh), which would otherwise not say
# what failed.
set -o errtrace
trap 'log "FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
node_() { "$ROOT/node_modules/.bin/node" "$@"; }
# Inside the node's network namespace, as the cluster admin, with kubectl and helm on PATH.
X() { scripts/cluster.sh exec -- "$@"; }
k() { X kubectl "$@"; }

diagnostics() {
  log "diagnostics:"
  k get pods -A -o wide >&2 || true
  k get sniffpolicies -A -o wide >&2 || true
  k -n "$NS" logs -l app.kubernetes.io/component=agent --tail=80 >&2 || true
  k -n "$NS" logs -l app.kubernetes.io/component=controller --tail=40 >&2 || true
  k get events -A --sort-by=.lastTimestamp | tail -40 >&2 || true
  state=${PODTAP_CLUSTER_STATE:-/var/lib/podtap/cluster}
  for f in kubelet containerd; do tail -20 "$state/log/$f.log" 2>/dev/null | sed "s/^/$f: /" >&2 || true; done
}

cleanup() {
  local rc=$?
  if [ -n "$TCPDUMP_PID" ]; then kill "$TCPDUMP_PID" 2>/dev/null || true; fi
  if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
  if $CLUSTER_OURS && [ "$rc" -ne 0 ]; then diagnostics; fi
  if $CLUSTER_OURS && { ! $keep || [ "$rc" -eq 0 ]; }; then scripts/cluster.sh down || rc=1; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# One podtap run per machine: the test suite's lifecycle tests remove every
# podtap pin in the (machine-wide) bpffs, the agent's included.
# (scripts/test.sh holds it already and says so.)
if [ -z "${PODTAP_SUITE_LOCK_HELD:-}" ]; then
  exec 8>/run/lock/podtap-test.lock
  if ! flock -n 8; then log "a podtap test suite runs on this machine; waiting for it"; flock 8; fi
fi

HELM_BIN=$(scripts/cluster/build.sh helm)
helm() { X "$HELM_BIN/helm" "$@"; }

# The host-side veth of a pod, found independently of podtap: containerd's
# sandbox container for the pod's UID names its network namespace; eth0 there
# is one end of a veth whose peer index is the host side's ifindex.
host_veth() {
  local uid netns peer
  uid=$(k -n "$APP" get pod "$1" -o jsonpath='{.metadata.uid}')
  local sock=${PODTAP_CLUSTER_STATE:-/var/lib/podtap/cluster}/run/containerd.sock
  local id
  id=$(ctr --address "$sock" -n k8s.io containers ls -q "labels.\"io.kubernetes.pod.uid\"==$uid,labels.\"io.cri-containerd.kind\"==sandbox" | head -1)
  [ -n "$id" ] || fail "no sandbox container for pod $1 ($uid)"
  netns=$(ctr --address "$sock" -n k8s.io containers info "$id" | node_ -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const n=JSON.parse(s).Spec.linux.namespaces.find(x=>x.type==="network");console.log(n.path)})')
  peer=$(nsenter --net="$netns" ip -j link show eth0 | node_ -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].link_index))')
  X ip -j link show | node_ -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).find(l=>l.ifindex===$peer).ifname))"
}

# run_layout LAYOUT FULL: the story on the running cluster, switched to LAYOUT;
# FULL=true adds the checks that do not depend on the layout.
run_layout() {
  LAYOUT=$1
  local full=$2
  scripts/cluster.sh layout "$LAYOUT"

  # ---- install ------------------------------------------------------------
  log "helm install (the image built from the Dockerfile, imported into containerd)"
  # The single-node cluster has no storage provisioner: the chart's default
  # (captures on a claim) is refused at install, naming what to set, rather
  # than leaving the claim Pending and the collector never started ...
  if $full; then
    if out=$(helm install "$RELEASE" charts/podtap -n "$NS" --create-namespace --dry-run=server 2>&1); then
      fail "helm install with a capture claim and no default StorageClass was accepted"
    fi
    grep -q 'collector.persistence: this cluster has no default StorageClass' <<<"$out" || fail "unexpected refusal: $out"
  fi
  # ... so captures go on an emptyDir here
  helm install "$RELEASE" charts/podtap -n "$NS" --create-namespace \
    --set image.repository=localhost/podtap/podtap --set image.tag=e2e --set image.pullPolicy=Never \
    --set collector.persistence.enabled=false \
    --wait --timeout 5m
  k -n "$NS" rollout status daemonset/podtap-agent --timeout=3m
  k -n "$NS" rollout status deployment/podtap-controller --timeout=3m
  k -n "$NS" rollout status deployment/podtap-collector --timeout=3m
  log "helm test (the chart's own end-to-end: a pod captures its API traffic through the collector)"
  helm test "$RELEASE" -n "$NS" --timeout 3m --logs

  # ---- two pods and a policy ---------------------------------------------
  log "test pods"
  k create namespace "$APP"
  for p in server client; do
    cat <<EOF | k apply -f -
apiVersion: v1
kind: Pod
metadata: {name: $p, namespace: $APP, labels: {app: $p}}
spec:
  containers:
    - name: $p
      image: localhost/podtap/testpod:1.0
      imagePullPolicy: Never
      command: [sh, -c, "iperf3 -s -D; socat -u UDP6-RECV:9000,ipv6only=0 /dev/null & exec sleep infinity"]
EOF
  done
  k -n "$APP" wait --for=condition=Ready pod/server pod/client --timeout=3m
  SERVER_IPS=$(k -n "$APP" get pod server -o jsonpath='{range .status.podIPs[*]}{.ip}{" "}{end}')
  SERVER4=$(echo "$SERVER_IPS" | tr ' ' '\n' | grep -v : | head -1)
  SERVER6=$(echo "$SERVER_IPS" | tr ' ' '\n' | grep : | head -1 || true)
  log "server at $SERVER_IPS"

  log "SniffPolicy capturing app=client"
  cat <<EOF | k apply -f -
apiVersion: podtap.io/v1alpha1
kind: SniffPolicy
metadata: {name: client, namespace: $APP}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Ingress, Egress]
  collector:
    service: {name: podtap-collector, namespace: $NS}
  limits: {duration: 30m}
EOF
  k -n "$APP" wait --for=condition=Ready sniffpolicy/client --timeout=3m

  # ---- traffic, with tcpdump as ground truth on the host veth --------------
  VETH=$(host_veth client)
  log "client's host veth: $VETH; tcpdump there"
  # nsenter execs tcpdump: $! is tcpdump itself (SIGTERM ends it cleanly; a
  # background job of this shell ignores SIGINT)
  nsenter --net="$NETNS" tcpdump -i "$VETH" -w "$WORK/truth.pcap" -s 0 -U --immediate-mode -B 65536 2>"$WORK/tcpdump.log" &
  TCPDUMP_PID=$!
  for _ in $(seq 50); do grep -q listening "$WORK/tcpdump.log" && break; sleep 0.1; done
  log "traffic: TCP bulk (iperf3, GSO), a 65507-byte UDP datagram, 65507-byte pings"
  # Paced: unpaced bulk TCP on this 2-core machine overflows the collector's
  # socket (its losses are counted in its /metrics, tested elsewhere); here
  # every frame must arrive. GSO super-packets still cross the veth.
  k -n "$APP" exec client -- iperf3 -c "$SERVER4" -t 2 -b 40M -f m | tail -3 >&2
  k -n "$APP" exec client -- sh -c "head -c 65507 /dev/zero | tr '\\0' x | socat -u -b 65507 STDIN UDP4-SENDTO:$SERVER4:9000"
  k -n "$APP" exec client -- ping -c 3 -s 65507 -i 0.3 "$SERVER4" >&2
  if [ -n "$SERVER6" ]; then
    log "IPv6: ping and TCP to $SERVER6"
    k -n "$APP" exec client -- ping -6 -c 3 -s 65000 -i 0.3 "$SERVER6" >&2
    k -n "$APP" exec client -- iperf3 -6 -c "$SERVER6" -t 1 -b 40M -f m | tail -2 >&2
  fi
  sleep 2
  kill -TERM "$TCPDUMP_PID"; wait "$TCPDUMP_PID" || true; TCPDUMP_PID=
  sleep 6 # a report interval: counters reach the policy's status
  k -n "$APP" get sniffpolicies -o wide

  # ---- the capture, judged by tshark ---------------------------------------
  log "kubectl podtap fetch: the collector's pcapng"
  X env PATH="$ROOT/scripts:$PATH" kubectl podtap fetch --policy client -n "$APP" -w "$WORK/podtap.pcapng" >&2 ||
    fail "kubectl podtap fetch failed"
  node_ scripts/e2e/compare.ts "$WORK/truth.pcap" "$WORK/podtap.pcapng" "$APP/client" || fail "the capture misses frames tcpdump saw"

  # The policy's LOST column counts what the nodes could not send; what the
  # collector could not keep (socket overflow, sequence gaps, incomplete
  # frames, writes) is only in its own metrics (docs/collector.md): both are 0.
  log "the collector's loss counters (its /metrics, through the API server's service proxy)"
  k get --raw "/api/v1/namespaces/$NS/services/http:podtap-collector:http/proxy/metrics" >"$WORK/collector.metrics" ||
    fail "cannot read the collector's /metrics"
  metric() { awk -v m="$1" '$1 == m { print $2 }' "$WORK/collector.metrics"; }
  [ "$(metric podtap_collector_written_total)" -gt 0 ] || fail "the collector's written_total is $(metric podtap_collector_written_total)"
  for m in podtap_collector_kernel_dropped_total podtap_collector_lost_total podtap_collector_incomplete_total \
    'podtap_collector_write_dropped_total{reason="handoff"}' 'podtap_collector_write_dropped_total{reason="disk-slow"}' \
    'podtap_collector_write_dropped_total{reason="write-failed"}'; do
    [ "$(metric "$m")" = 0 ] || fail "the collector counted losses the policy's status does not show: $m = $(metric "$m")"
  done
  pol_lost=$(k -n "$APP" get sniffpolicy client -o jsonpath='{.status.lost}')
  [ "${pol_lost:-0}" = 0 ] || fail "the policy counted ${pol_lost} lost packets"

  log "kubectl podtap capture client -o -: the live stream"
  # This layout's own files, made empty here, before the capture starts: the
  # redirections below happen in the background job, after this shell may
  # already have looked, and a file of the previous layout that says "ready"
  # would start the pings before this capture is attached.
  local live_log=$WORK/live-$LAYOUT.log live_pcap=$WORK/live-$LAYOUT.pcapng
  : >"$live_log"
  X env PATH="$ROOT/scripts:$PATH" timeout 120 kubectl podtap capture -n "$APP" client --for 30s -o - >"$live_pcap" 2>"$live_log" &
  live=$!
  # its policy is new: the agent compiles and attaches first (seconds, more on a busy machine)
  for _ in $(seq 120); do grep -q 'ready: capturing' "$live_log" && break; sleep 0.5; done
  grep -q 'ready: capturing' "$live_log" || fail "kubectl podtap capture never became ready: $(tail -5 "$live_log")"
  k -n "$APP" exec client -- ping -c 5 -i 0.2 "$SERVER4" >/dev/null
  wait "$live" || fail "kubectl podtap capture failed: $(tail -5 "$live_log")"
  n=$(tshark -r "$live_pcap" -Y "icmp && ip.addr == $SERVER4" -T fields -e frame.number 2>/dev/null | wc -l)
  [ "$n" -ge 10 ] || fail "the live stream has $n ICMP frames of the 10 sent and answered: $(tail -3 "$live_log")"

  log "the policy's status: Ready, packets counted"
  packets=$(k -n "$APP" get sniffpolicy client -o jsonpath='{.status.packets}')
  [ "${packets:-0}" -gt 0 ] || fail "status.packets is '${packets:-}'"

  if $full; then
    # ---- the API server refuses invalid policies ------------------------------
    log "invalid policies refused by the API server"
    out=$(printf '%s\n' "apiVersion: podtap.io/v1alpha1" "kind: SniffPolicy" "metadata: {name: bad, namespace: $APP}" \
      "spec: {collector: {address: 198.18.9.2}, filter: {ports: [{port: 443, endPort: 80}]}}" | k apply -f - 2>&1) && fail "an invalid policy was accepted"
    if ! grep -q 'spec.filter.ports\[0\].endPort' <<<"$out" || ! grep -q 'endPort must be greater than or equal to port' <<<"$out"; then
      fail "unexpected refusal: $out"
    fi

    # ---- the agent's least privilege ---------------------------------------------
    log "the agent's ServiceAccount: no pods cluster-wide, no Secrets"
    sa=system:serviceaccount:$NS:podtap-agent
    for verb_res in "list pods --all-namespaces" "get secrets -n $NS" "list secrets --all-namespaces"; do
      # shellcheck disable=SC2086
      [ "$(k auth can-i $verb_res --as="$sa")" = no ] || fail "the agent can $verb_res"
    done
    token=$(k -n "$NS" create token podtap-agent --duration=10m)
    if X kubectl --token="$token" --kubeconfig=/dev/null --server="https://198.18.0.1:6443" \
      --certificate-authority="${PODTAP_CLUSTER_STATE:-/var/lib/podtap/cluster}/pki/ca.crt" get pods -A >/dev/null 2>"$WORK/forbidden"; then
      fail "the agent's token lists pods cluster-wide"
    fi
    grep -q forbidden "$WORK/forbidden" || fail "not a refusal: $(cat "$WORK/forbidden")"

    # ---- upgrade keeps capturing ---------------------------------------------
    log "helm upgrade with changed values (the agents roll) keeps capturing"
    before=$(k -n "$APP" get sniffpolicy client -o jsonpath='{.status.packets}')
    # the agent being replaced: its last words (does it detach? it must not) outlive its pod
    state=${PODTAP_CLUSTER_STATE:-/var/lib/podtap/cluster}
    tail -n +1 -F "$state"/log/pods/"$NS"_podtap-agent-*/agent/*.log >"$WORK/old-agent.log" 2>/dev/null &
    TAIL_PID=$!
    helm upgrade "$RELEASE" charts/podtap -n "$NS" --reuse-values --set agent.reportIntervalSeconds=3 --wait --timeout 5m
    k -n "$NS" rollout status daemonset/podtap-agent --timeout=3m
    k -n "$APP" exec client -- ping -c 20 -i 0.1 "$SERVER4" >/dev/null
    sleep 8
    after=$(k -n "$APP" get sniffpolicy client -o jsonpath='{.status.packets}')
    kill "$TAIL_PID" 2>/dev/null || true
    if [ "$after" -lt $((before + 40)) ]; then
      grep -E 'stopping|stopped|detach' "$WORK/old-agent.log" | tail -5 >&2 || true
      k -n "$NS" logs -l app.kubernetes.io/component=agent -c agent | grep -E 'adopted|agent started' >&2 || true
      fail "after the upgrade the policy counted $((after - before)) packets of the 40 pinged"
    fi
  fi

  # ---- uninstall ---------------------------------------------------------------
  log "policy delete detaches"
  k -n "$APP" delete sniffpolicy client --wait=true
  for _ in $(seq 30); do
    X tc filter show dev "$VETH" ingress | grep -q pt_tap || break
    sleep 1
  done
  ! X tc filter show dev "$VETH" ingress | grep -q pt_tap || fail "the tap is still on $VETH after the policy was deleted"

  log "helm uninstall leaves nothing of podtap on the node"
  helm uninstall "$RELEASE" -n "$NS" --wait --timeout 5m
  # (/sys/class/net would list the host's interfaces: nsenter --net keeps the host's sysfs)
  # shellcheck disable=SC2016
  left=$(X sh -c 'ls /sys/fs/bpf/podtap 2>/dev/null; ip -o link show | grep -E " pt[cp][a-z0-9]+[@:]"; for d in $(ip -o link show | cut -d: -f2 | cut -d@ -f1); do tc filter show dev "$d" ingress; tc filter show dev "$d" egress; done 2>/dev/null | grep -E "pt_(tap|tunnel|emit)"; true')
  [ -z "$left" ] || fail "left on the node after uninstall: $left"
  # The agent sees only /sys/fs/bpf/podtap, its own mount point, which it
  # cannot remove: the directory may stay, but empty (docs/security.md).
  [ -z "$(ls -A /sys/fs/bpf/podtap 2>/dev/null)" ] || fail "pins left in /sys/fs/bpf/podtap after uninstall: $(ls -A /sys/fs/bpf/podtap)"
  if [ -e /sys/fs/bpf/podtap ]; then log "note: the empty /sys/fs/bpf/podtap stays after uninstall (the agent's mount point; by design)"; fi
  # The compile cache (agent.compileCacheHostPath, /var/cache/podtap) is kept by
  # design across upgrades; an uninstall leaves it. Said here, not hidden:
  if [ -n "$(ls /var/cache/podtap/objects 2>/dev/null)" ]; then log "note: the agents' compile cache /var/cache/podtap/objects stays after uninstall (by design)"; fi

  # the next layout wires only new pods: none of this one's may stay
  k -n "$APP" delete pods --all --grace-period=1 --wait=true >/dev/null # (sleep as pid 1 ignores SIGTERM)
  k delete namespace "$APP" --wait=true >/dev/null
  log "passed"
}

# stale_pins: podtap capturing, then cluster.sh down without helm uninstall
# (a user's shortcut): the agent's pins in the host's bpffs must go with the cluster.
stale_pins() {
  LAYOUT=down
  log "install, capture, and cluster.sh down without an uninstall"
  helm install "$RELEASE" charts/podtap -n "$NS" --create-namespace \
    --set image.repository=localhost/podtap/podtap --set image.tag=e2e --set image.pullPolicy=Never \
    --set collector.persistence.enabled=false --wait --timeout 5m
  k create namespace "$APP"
  printf '%s\n' "apiVersion: v1" "kind: Pod" "metadata: {name: client, namespace: $APP, labels: {app: client}}" \
    "spec: {containers: [{name: c, image: localhost/podtap/testpod:1.0, imagePullPolicy: Never, command: [sleep, infinity]}]}" | k apply -f -
  printf '%s\n' "apiVersion: podtap.io/v1alpha1" "kind: SniffPolicy" "metadata: {name: left, namespace: $APP}" \
    "spec: {podSelector: {matchLabels: {app: client}}, collector: {service: {name: podtap-collector, namespace: $NS}}}" | k apply -f -
  k -n "$APP" wait --for=condition=Ready pod/client --timeout=3m
  k -n "$APP" wait --for=condition=Ready sniffpolicy/left --timeout=3m
  local uid session
  uid=$(k -n "$APP" get sniffpolicy left -o jsonpath='{.metadata.uid}')
  session=/sys/fs/bpf/podtap/a-$(printf '%s' "$uid" | sha256sum | cut -c1-12)
  [ -d "$session" ] || fail "the policy's session $session is not pinned"
  log "cluster down"
  scripts/cluster.sh down
  scripts/cluster.sh check-clean || fail "cluster.sh down left things behind"
  [ ! -e "$session" ] || fail "cluster.sh down left the agent's pins $session"
}

for l in "${layouts[@]}"; do
  case $l in bridge|ptp) ;; *) echo "e2e: --layout must be bridge or ptp, not '$l'" >&2; exit 2 ;; esac
done
STARTED=$SECONDS
log "cluster up (${layouts[0]} layout)"
CLUSTER_OURS=true
scripts/cluster.sh up --layout "${layouts[0]}"
log "cluster up after $((SECONDS - STARTED)) s"
full=true
for l in "${layouts[@]}"; do
  t0=$SECONDS
  run_layout "$l" "$full"
  log "$l: $((SECONDS - t0)) s"
  full=false
done
t0=$SECONDS
stale_pins
log "down without uninstall: $((SECONDS - t0)) s"
LAYOUT=
log "all checks passed for: ${layouts[*]} ($((SECONDS - STARTED)) s)"
