/**
 * Kubernetes' names, once: object names are DNS-1123 subdomains, namespaces
 * and Services DNS-1123 labels. The API's schemas validate policies with
 * these, and the wire's announcements hold the names they carry to the same
 * rules (they become directories and files on the collector).
 */
import { z } from 'zod';

/** DNS-1123 subdomain: lowercase labels joined by dots, at most 253 characters. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** DNS-1123 label: lowercase letters, digits and '-', at most 63 characters. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Kubernetes object name (DNS-1123 subdomain). */
export const ObjectNameSchema = z.string().max(253).regex(DNS_SUBDOMAIN, 'must be a lowercase DNS-1123 name');

/** DNS-1123 label: namespaces and Service names. */
export const DnsLabelSchema = z.string().max(63).regex(DNS_LABEL, 'must be a lowercase DNS-1123 label (letters, digits, -)');
