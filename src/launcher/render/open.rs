//! `--open`: the report page in the person's browser, through the `opener` crate (`$BROWSER`
//! when set, else `xdg-open` — the system's, or the copy inside `opener` — or `open` on macOS),
//! or one line saying why it was not opened: the report is not local, there is no display, the
//! file is not there, the opener could not be started.

use std::path::Path;

use crate::store::ReportStore;

/// What opens files when `$BROWSER` is not set, as the user is told.
const SYSTEM_OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else if cfg!(windows) {
    "the default browser"
} else {
    "xdg-open"
};

/// What `--open` does with the report stored at `key`: opens it when the store is a local
/// directory, and says why not otherwise. Returns one line for the user.
pub(crate) fn open_from_store(store: &ReportStore, key: &str) -> String {
    let location = store.display_url(key);
    match store {
        ReportStore::Local(_) => match open_in_browser(Path::new(&location)) {
            Ok(how) => format!("html report {how}"),
            Err(why) => format!("html report not opened: {why}"),
        },
        ReportStore::S3 { .. } => format!(
            "html report not opened: it is on S3; download it first (aws s3 cp {location} .) \
             and open the copy"
        ),
    }
}

/// Opens a local file in the browser. Returns how it was opened, or why it could not be, in
/// one line for the user. The opener is not waited for (it may live as long as the browser),
/// so a desktop without any browser configured is not detected here.
fn open_in_browser(path: &Path) -> Result<String, String> {
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    let browser = non_empty_env("BROWSER");
    if cfg!(all(unix, not(target_os = "macos")))
        && non_empty_env("DISPLAY").is_none()
        && non_empty_env("WAYLAND_DISPLAY").is_none()
        && browser.is_none()
    {
        return Err(format!(
            "no display (neither DISPLAY nor WAYLAND_DISPLAY is set, nor BROWSER): copy {} to a \
             machine with a browser",
            path.display()
        ));
    }
    // An empty BROWSER means none: `open_browser` would try to run a program named "".
    let opened = match &browser {
        Some(_) => opener::open_browser(path),
        None => opener::open(path),
    };
    opened.map_err(|e| format!("could not open it ({e}); open {} yourself", path.display()))?;
    Ok(format!(
        "opened with {}",
        browser.as_deref().unwrap_or(SYSTEM_OPENER)
    ))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_not_opened() {
        let why = open_in_browser(Path::new("/nonexistent/report.html")).unwrap_err();
        assert_eq!(why, "/nonexistent/report.html does not exist");
    }
}
