//! What a person sees while guests run. On a terminal: a live status, one line per running guest
//! (booting / running N of M / done) under an overall bar, with each finished guest's summary
//! printed above it. Anywhere else (CI logs, pipes, `TERM=dumb`): one line per event, as before,
//! so that logs stay greppable.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::guest::Event;

/// A guest's state as the live status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    /// qemu started; the suite has not written its first line.
    Booting {
        /// 1, or 2 after a retry.
        attempt: u32,
    },
    /// The suite is running.
    Running {
        /// Results received.
        done: usize,
        /// The plan, once its line arrived.
        of: Option<usize>,
    },
}

impl GuestState {
    /// Folds an event into the state.
    pub fn next(self, event: &Event) -> GuestState {
        match (self, event) {
            (_, Event::Booting { attempt }) => GuestState::Booting { attempt: *attempt },
            (GuestState::Booting { .. }, Event::Started { .. }) => {
                GuestState::Running { done: 0, of: None }
            }
            (GuestState::Running { done, .. }, Event::Plan { cases }) => GuestState::Running {
                done,
                of: Some(*cases),
            },
            (GuestState::Running { done, of }, Event::Result { .. }) => {
                GuestState::Running { done: done + 1, of }
            }
            (s, _) => s,
        }
    }

    /// `booting`, `booting (attempt 2)`, `running 12 of 291`.
    pub fn text(self) -> String {
        match self {
            GuestState::Booting { attempt: 1 } => "booting".to_owned(),
            GuestState::Booting { attempt } => format!("booting (attempt {attempt})"),
            GuestState::Running { done, of: Some(n) } => format!("running {done} of {n}"),
            GuestState::Running { done, of: None } => format!("running, {done} results"),
        }
    }
}

/// Where progress goes: lines, or a live status on a terminal.
#[derive(Debug)]
pub struct Reporter {
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    guests: Mutex<HashMap<String, (ProgressBar, GuestState)>>,
}

impl Reporter {
    /// A live status when stderr is a terminal (and `TERM` is not `dumb`), else lines.
    pub fn for_stderr(total: usize) -> Self {
        let tty =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        if tty {
            let r = Self::live(total, ProgressDrawTarget::stderr());
            if let Some(live) = &r.live {
                // An interrupt's message goes above the status instead of under its next redraw;
                // the status is cleared first, so nothing is left drawn if the process exits.
                let multi = live.multi.clone();
                crate::cleanup::set_printer(Some(Box::new(move |msg: &str| {
                    let _ = multi.clear();
                    eprintln!("{msg}");
                })));
            }
            r
        } else {
            Self::lines()
        }
    }

    /// Line-per-event output.
    pub fn lines() -> Self {
        Reporter { live: None }
    }

    /// A live status drawn to `target` (hidden in tests).
    pub fn live(total: usize, target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} guests done, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_prefix("pkeys-qemu:");
        overall.enable_steady_tick(Duration::from_millis(250));
        Reporter {
            live: Some(Live {
                multi,
                overall,
                guests: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether this draws a live status.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The state shown for a guest (live mode only).
    pub fn state(&self, name: &str) -> Option<GuestState> {
        let live = self.live.as_ref()?;
        let guests = live.guests.lock().unwrap_or_else(|e| e.into_inner());
        guests.get(name).map(|(_, s)| *s)
    }

    /// A guest event: a line (booting, started, retrying), or an update of its status line.
    pub fn event(&self, name: &str, event: Event) {
        let Some(live) = &self.live else {
            if let Some(line) = event_line(name, &event) {
                eprintln!("{line}");
            }
            return;
        };
        if let Event::Retrying { .. } = &event
            && let Some(line) = event_line(name, &event)
        {
            let _ = live.multi.println(line);
        }
        let mut guests = live.guests.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, state) = guests.entry(name.to_owned()).or_insert_with(|| {
            let bar = live
                .multi
                .insert_before(&live.overall, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix}: {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_owned());
            bar.set_message(GuestState::Booting { attempt: 1 }.text());
            bar.enable_steady_tick(Duration::from_millis(250));
            (bar, GuestState::Booting { attempt: 1 })
        });
        *state = state.next(&event);
        bar.set_message(state.text());
    }

    /// A guest finished: its summary line stays on screen; its status line goes.
    pub fn finished(&self, name: &str, line: String) {
        match &self.live {
            None => eprintln!("{line}"),
            Some(live) => {
                let bar = live
                    .guests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
                if let Some((bar, _)) = bar {
                    bar.finish_and_clear();
                    live.multi.remove(&bar);
                }
                let _ = live.multi.println(line);
                live.overall.inc(1);
            }
        }
    }

    /// Removes the live status (before the closing lines are printed).
    pub fn clear(&self) {
        if let Some(live) = &self.live {
            crate::cleanup::set_printer(None);
            live.overall.finish_and_clear();
            let _ = live.multi.clear();
        }
    }
}

/// The line-mode text of an event (result lines are not printed in a matrix).
pub fn event_line(name: &str, event: &Event) -> Option<String> {
    match event {
        Event::Booting { attempt: 1 } => Some(format!("pkeys-qemu: {name}: booting")),
        Event::Booting { attempt } => {
            Some(format!("pkeys-qemu: {name}: booting (attempt {attempt})"))
        }
        Event::Started { after_s } => Some(format!(
            "pkeys-qemu: {name}: suite started after {after_s:.1} s"
        )),
        Event::Retrying { reason } => Some(format!(
            "pkeys-qemu: {name}: failed before the suite started ({reason}); retrying once"
        )),
        Event::Plan { .. } | Event::Result { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(line: &str) -> Event {
        Event::Result {
            line: line.to_owned(),
            case: pkeys_report::ktap::parse_result_line(line).unwrap(),
        }
    }

    #[test]
    fn states_follow_the_events() {
        let mut s = GuestState::Booting { attempt: 1 };
        assert_eq!(s.text(), "booting");
        s = s.next(&Event::Started { after_s: 3.0 });
        assert_eq!(s.text(), "running, 0 results");
        s = s.next(&Event::Plan { cases: 291 });
        s = s.next(&result("ok 1 a"));
        s = s.next(&result("not ok 2 b"));
        assert_eq!(s.text(), "running 2 of 291");
        s = s.next(&Event::Booting { attempt: 2 });
        assert_eq!(s.text(), "booting (attempt 2)");
    }

    #[test]
    fn live_status_tracks_guests_and_forgets_finished_ones() {
        let r = Reporter::live(2, ProgressDrawTarget::hidden());
        assert!(r.is_live());
        r.event("a", Event::Booting { attempt: 1 });
        r.event("a", Event::Started { after_s: 1.0 });
        r.event("a", Event::Plan { cases: 3 });
        r.event("a", result("ok 1 x"));
        assert_eq!(
            r.state("a"),
            Some(GuestState::Running {
                done: 1,
                of: Some(3)
            })
        );
        r.finished("a", "a: PASS".into());
        assert_eq!(r.state("a"), None);
        r.clear();
    }

    #[test]
    fn lines_mode_prints_what_ci_logs_always_had() {
        assert!(!Reporter::lines().is_live());
        assert_eq!(
            event_line("g", &Event::Started { after_s: 3.44 }).as_deref(),
            Some("pkeys-qemu: g: suite started after 3.4 s")
        );
        assert_eq!(event_line("g", &result("ok 1 a")), None);
    }
}
