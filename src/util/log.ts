import { pino, type Logger } from 'pino';

export type { Logger };

/** The process logger: JSON lines on stderr, level from PODTAP_LOG_LEVEL. */
export function rootLogger(name: string): Logger {
  return pino(
    { name, level: process.env.PODTAP_LOG_LEVEL ?? 'info', base: { component: name } },
    pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = pino({ level: 'silent' });
