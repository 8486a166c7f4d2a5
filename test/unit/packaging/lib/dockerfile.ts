/**
 * A reader for the subset of Dockerfile syntax podtap's Dockerfile uses:
 * stages, ARG/ENV expansion, RUN (shell form, with BuildKit --mount=type=cache),
 * COPY (from the context or --from a stage), WORKDIR, USER, LABEL, ENTRYPOINT
 * and CMD (exec form). Anything else is refused, so the Dockerfile cannot
 * quietly grow past what test/kernel/image.test.ts proves.
 */

export type Instruction =
  | { op: 'RUN'; command: string; cacheMounts: string[]; raw: string }
  | { op: 'COPY'; from?: string; sources: string[]; dest: string; raw: string }
  | { op: 'WORKDIR'; dir: string; raw: string }
  | { op: 'ENV'; vars: Record<string, string>; raw: string }
  | { op: 'ARG'; name: string; value?: string; raw: string }
  | { op: 'LABEL'; labels: Record<string, string>; raw: string }
  | { op: 'USER'; user: string; raw: string }
  | { op: 'ENTRYPOINT' | 'CMD'; argv: string[]; raw: string };

export interface Stage {
  name?: string;
  /** The base image, after ARG expansion. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  stages: Stage[];
}

/** Logical lines: comments dropped, backslash continuations joined. */
function logicalLines(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (!cur && /^\s*#/.test(line)) continue;
    if (/^\s*#/.test(line)) continue; // comment inside a continuation
    if (/\\\s*$/.test(line)) {
      cur += `${line.replace(/\\\s*$/, '')} `;
      continue;
    }
    cur += line;
    if (cur.trim()) out.push(cur.trim());
    cur = '';
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** Docker's word splitting for KEY=VALUE lists: double quotes group, backslash escapes. */
function words(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote = false;
  let any = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
      any = true;
    } else if (ch === '"') {
      quote = !quote;
      any = true;
    } else if (/\s/.test(ch) && !quote) {
      if (any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += ch;
      any = true;
    }
  }
  if (any) out.push(cur);
  return out;
}

export function expand(s: string, vars: Record<string, string | undefined>): string {
  return s.replace(/\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g, (_m, a: string | undefined, def: string | undefined, b: string | undefined) => {
    const v = vars[(a ?? b)!];
    return v === undefined || v === '' ? (def ?? '') : v;
  });
}

function keyValues(rest: string, vars: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of words(rest)) {
    const i = w.indexOf('=');
    if (i <= 0) throw new Error(`expected KEY=VALUE, got "${w}"`);
    out[w.slice(0, i)] = expand(w.slice(i + 1), vars);
  }
  return out;
}

export function parseDockerfile(text: string): Dockerfile {
  const stages: Stage[] = [];
  const globalArgs: Record<string, string | undefined> = {};
  let stage: Stage | undefined;
  let scope: Record<string, string | undefined> = {};
  for (const line of logicalLines(text)) {
    const m = /^(\w+)\s*(.*)$/s.exec(line);
    if (!m) throw new Error(`cannot read Dockerfile line: ${line}`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`cannot read FROM ${rest}`);
      stage = { from: expand(f[1]!, globalArgs), instructions: [], ...(f[2] ? { name: f[2] } : {}) };
      stages.push(stage);
      scope = {};
      continue;
    }
    if (!stage) {
      if (op !== 'ARG') throw new Error(`${op} before FROM`);
      const [name, value] = rest.split('=', 2) as [string, string | undefined];
      globalArgs[name] = value;
      continue;
    }
    const raw = `${op} ${rest}`;
    switch (op) {
      case 'ARG': {
        const [name, value] = rest.split('=', 2) as [string, string | undefined];
        // An ARG inside a stage brings a global ARG's value into scope.
        scope[name] = value ?? globalArgs[name];
        stage.instructions.push({ op, name, raw, ...(scope[name] !== undefined ? { value: scope[name] } : {}) });
        break;
      }
      case 'ENV': {
        const vars = keyValues(rest, scope);
        Object.assign(scope, vars);
        stage.instructions.push({ op, vars, raw });
        break;
      }
      case 'LABEL':
        stage.instructions.push({ op, labels: keyValues(rest, scope), raw });
        break;
      case 'WORKDIR':
        stage.instructions.push({ op, dir: expand(rest, scope), raw });
        break;
      case 'USER':
        stage.instructions.push({ op, user: expand(rest, scope), raw });
        break;
      case 'ENTRYPOINT':
      case 'CMD': {
        const argv = JSON.parse(rest) as unknown;
        if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) throw new Error(`${op} must be in exec form (a JSON array)`);
        stage.instructions.push({ op, argv: argv as string[], raw });
        break;
      }
      case 'RUN': {
        const cacheMounts: string[] = [];
        let cmd = rest;
        for (;;) {
          const mm = /^--mount=(\S+)\s+/.exec(cmd);
          if (!mm) break;
          const opts = Object.fromEntries(mm[1]!.split(',').map((kv) => kv.split('=') as [string, string]));
          if (opts.type !== 'cache' || !opts.target) throw new Error(`RUN --mount: only type=cache,target=… is supported (${mm[1]})`);
          cacheMounts.push(opts.target);
          cmd = cmd.slice(mm[0].length);
        }
        if (cmd.startsWith('[')) throw new Error('RUN must be in shell form');
        stage.instructions.push({ op, command: cmd, cacheMounts, raw });
        break;
      }
      case 'COPY': {
        const parts = words(rest);
        let from: string | undefined;
        while (parts[0]?.startsWith('--')) {
          const flag = parts.shift()!;
          const fm = /^--from=(\S+)$/.exec(flag);
          if (!fm) throw new Error(`COPY ${flag} is not supported`);
          from = fm[1];
        }
        if (parts.length < 2) throw new Error(`COPY needs a source and a destination: ${rest}`);
        const dest = expand(parts.pop()!, scope);
        stage.instructions.push({ op, sources: parts.map((p) => expand(p, scope)), dest, raw, ...(from ? { from } : {}) });
        break;
      }
      default:
        throw new Error(`Dockerfile instruction ${op} is not supported by the image test`);
    }
  }
  return { stages };
}

/** The image configuration a stage ends with (what `docker inspect` would show). */
export interface ImageConfig {
  env: Record<string, string>;
  user: string;
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  labels: Record<string, string>;
}

export function imageConfig(stage: Stage, base: Partial<ImageConfig> = {}): ImageConfig {
  const cfg: ImageConfig = { env: { ...(base.env ?? {}) }, user: base.user ?? 'root', workdir: base.workdir ?? '/', entrypoint: base.entrypoint ?? [], cmd: base.cmd ?? [], labels: {} };
  for (const i of stage.instructions) {
    if (i.op === 'ENV') Object.assign(cfg.env, i.vars);
    else if (i.op === 'USER') cfg.user = i.user;
    else if (i.op === 'WORKDIR') cfg.workdir = i.dir.startsWith('/') ? i.dir : `${cfg.workdir.replace(/\/$/, '')}/${i.dir}`;
    else if (i.op === 'ENTRYPOINT') {
      cfg.entrypoint = i.argv;
      cfg.cmd = [];
    } else if (i.op === 'CMD') cfg.cmd = i.argv;
    else if (i.op === 'LABEL') Object.assign(cfg.labels, i.labels);
  }
  return cfg;
}

/** .dockerignore matching: last matching pattern wins, "!" re-includes. */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pat = (negate ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      const re = pat
        .split('/')
        .map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negate, re: new RegExp(`^${re}(?:/.*)?$`) };
    });
  return (path: string) => {
    let ignored = false;
    for (const r of rules) if (r.re.test(path)) ignored = !r.negate;
    return ignored;
  };
}
