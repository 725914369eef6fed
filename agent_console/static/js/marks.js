// Marks in a transcript that are not speech: a PCI pause of the recording
// (transcripts/pauses.py), shown with how long nothing was recorded.

import { t } from "./i18n.js";

export function markerText(part) {
  if (part?.marker !== "recording_paused") return null;
  return t("transcript.recording_paused", { s: Math.round(Number(part.paused_s) || 0) });
}
