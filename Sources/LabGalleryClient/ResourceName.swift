/// Expands the short forms of resource names the client accepts into the full names the API
/// takes. Every method of `LabGalleryClient` applies these to its name arguments, so
/// `getGallery("shared")` and `getGallery("galleries/shared")` are the same call.
///
/// | kind | full name | also accepted |
/// |---|---|---|
/// | lab account | `labAccounts/{id}` | `{id}` |
/// | gallery | `galleries/{id}` | `{id}` |
/// | image | `galleries/{g}/images/{id}` | `{g}/{id}` |
/// | lab | `labAccounts/{a}/labs/{id}` | `{a}/{id}` |
///
/// Anything else is passed through unchanged, for the server to validate (INVALID_ARGUMENT
/// naming the field).
public enum ResourceName {
    /// `labAccounts/{id}` from `{id}` or the full name.
    public static func labAccount(_ s: String) -> String { topLevel(s, "labAccounts") }

    /// `galleries/{id}` from `{id}` or the full name.
    public static func gallery(_ s: String) -> String { topLevel(s, "galleries") }

    /// `galleries/{g}/images/{id}` from `{g}/{id}` or the full name.
    public static func image(_ s: String) -> String { nested(s, "galleries", "images") }

    /// `labAccounts/{a}/labs/{id}` from `{a}/{id}` or the full name.
    public static func lab(_ s: String) -> String { nested(s, "labAccounts", "labs") }

    private static func topLevel(_ s: String, _ collection: String) -> String {
        s.isEmpty || s.contains("/") ? s : "\(collection)/\(s)"
    }

    private static func nested(_ s: String, _ parent: String, _ child: String) -> String {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty
            ? "\(parent)/\(parts[0])/\(child)/\(parts[1])" : s
    }
}
