import LabGalleryCLIKit

/// The `labgallery` executable: the entry point alone. The commands, argument parsing, output and
/// prompts are the library `LabGalleryCLIKit`.
@main
enum LabGalleryMain {
    static func main() async {
        await LabGalleryCLI.main()
    }
}
