// Numbers, durations and dates, in the interface language.

import { locale, t } from "./i18n.js";

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

// A long span in words: "3 d 4 h", "25 min".
export function age(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 3600) return t("time.minutes", { n: Math.max(1, Math.floor(s / 60)) });
  if (s < 86400) return t("time.hours", { n: Math.floor(s / 3600) });
  return t("time.days_hours", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
}

export function dateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(date);
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(value);
}

export function percent(ratio, digits = 0) {
  if (ratio === null || ratio === undefined) return "—";
  return new Intl.NumberFormat(locale(), {
    style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(ratio);
}

export function clockTime(epochSeconds) {
  return new Intl.DateTimeFormat(locale(), { timeStyle: "medium" }).format(
    new Date(epochSeconds * 1000));
}
