"""The built-in generator's vocabulary: data only, apart from the rules that use it (:mod:`negopt.builtin.rules`).

What each table holds:

- Subject groups (``SUBJECTS``): what a prompt can show, the phrasings that detect it, and the defect terms that go
  with it; their order sets priority when several match (people's defects are the most visible).
- Style groups (``STYLES``): how a prompt is rendered; the first ``core`` terms of each are the style conflicts
  (what a different style would bring), the rest the style's own typical defects.
- ``CORE``, ``MARKS``, ``EXTRAS``: the universal quality terms, the watermark/signature terms and general defects.
- ``CONCEPTS``: what a prompt can ask for, and the negative terms that contradict it (never output for it).
- ``VIDEO_TERMS``: the temporal and motion terms added for video only (``VIDEO_CORE`` for every video negative,
  ``VIDEO_SUBJECT_TERMS`` by subject group, ``VIDEO_EXTRAS``), each with why a video negative names it and where
  video users pass it (``VIDEO_SOURCES``); ``VIDEO_CONCEPTS``: what a video prompt can ask for that they contradict
  ("a frozen lake", "a static shot", "a time-lapse", "a man walking backwards").
- ``CLIP_WORD_TOKENS``: the CLIP token count of every word the vocabulary uses.

Patterns are comma-separated regex fragments read by :func:`negopt.builtin.patterns.words` (word boundaries, an
optional plural, a space matching spaces or hyphens).

Where the vocabulary comes from:
    Curated by hand from negative prompts that the Stable Diffusion community has shared widely since 2022; nothing
    here is computed from a data set. The universal quality terms and the anatomy terms come from two lists that
    circulated widely and that many community negatives build on: the anime-model default ("lowres, bad anatomy, bad
    hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal
    quality, jpeg artifacts, signature, watermark, username, blurry") and the Stable Diffusion 1.x list passed around
    with AUTOMATIC1111's web UI ("tiling, poorly drawn hands, poorly drawn feet, poorly drawn face, out of frame,
    extra limbs, disfigured, deformed, body out of frame, bad anatomy, watermark, signature, cut off, low contrast,
    underexposed, overexposed, bad art, beginner, amateur, distorted face"). Negative Prompts DB
    (``mikeogezi/negopt_full``), which NegOpt trains on, collects negatives that Playground AI users wrote in this
    community style; we did not count term frequencies in it and claim no statistics about it. The subject-specific
    terms for vehicles, food, architecture, products and pixel art, and the style-conflict lists, are our own,
    written in the same style. Users add or remove terms with ``extra_terms`` and ``exclude_terms``. The video terms
    come from the negatives that video pipelines ship or show (Wan 2.x, LTX-Video and LTX-2, Cosmos, SANA-Video,
    Kandinsky 5, I2VGen-XL) and from community video negatives, named beside each term.

Content filtering is not its job: it adds no "nsfw" or similar terms; pass them in ``extra_terms`` if you want them.
"""

from __future__ import annotations

from negopt.builtin.patterns import Concept, Group, SourcedTerm, concept, exact, group, split_spec, word_table, words

__all__ = [
    "SUBJECTS",
    "STYLES",
    "CORE",
    "MARKS",
    "EXTRAS",
    "CONCEPTS",
    "CLIP_WORD_TOKENS",
    "VIDEO_SOURCES",
    "VIDEO_TERMS",
    "VIDEO_CORE",
    "VIDEO_SUBJECT_TERMS",
    "VIDEO_EXTRAS",
    "VIDEO_CONCEPTS",
]


PERSON = words(
    r"person, people, man, men, woman, women, girl, boy, \dgirl, \dboy, child, children, kid, baby, "
    "babies, toddler, teen, teenager, lady, ladies, guy, gentleman, gentlemen, human, humanoid, "
    "crowd, couple, family, families, friend, mother, father, mom, dad, grandmother, grandfather, "
    "grandma, grandpa, bride, groom, wife, husband, daughter, son, sister, brother, soldier, "
    "knight, warrior, king, queen, princess, prince, wizard, witch, sorcer(?:er|ess), elf, elves, "
    "nurse, doctor, chef, cook, farmer, fisherman, fishermen, dancer, athlete, player, fashion "
    "model, actor, actress, businessman, businesswoman, student, teacher, worker, astronaut, "
    "samurai, ninja, cowboy, cowgirl, pirate, monk, priest, nun, policeman, police officer, "
    "firefighter, musician, guitarist, singer, drummer, pianist, painter, scientist, surfer, "
    "skater, skateboarder, hiker, climber, runner, boxer, wrestler, ballerina, geisha, viking, "
    "gladiator, superhero, villain, detective, cyborg, android, vampire, zombie, character, selfie, "
    "he, she, him, his, her, self-portrait, headshot"
)
FACE = words(
    r"portrait, self-portrait, headshot, (?<!clock\s)(?<!cliff\s)(?<!rock\s)(?<!watch\s)face, "
    "facial, close-?up of (?:a|an|the) (?:man|woman|girl|boy|person), eye, eyes, smile, smiling, "
    "lips, freckle, expression, selfie, beard, makeup, mugshot, bust, profile picture, avatar, head "
    "and shoulders"
)
HANDS = words(
    r"(?<!clock\s)(?<!second\s)(?<!hour\s)(?<!minute\s)hand, hands, finger, fingers, fist, palm, "
    "manicure, handshake, shaking hands, hand in hand, thumbs? up, sign language, peace sign"
)
HANDS_CONTEXT = words(
    "holding, holds, hold, grip, gripping, grasp, grasping, waving, clapping, pointing, nails, "
    "gloves?, praying, typing, writing, knitting, sewing, juggling, playing (?:the "
    ")?(?:piano|guitar|violin|cello|drums|flute|harp|cards|chess)"
)
FULL_BODY = words(
    "full body, full-body, full-length, full length, whole body, head to toe, legs, barefoot, yoga, "
    "ballet, posing, pose"
)
FULL_BODY_CONTEXT = words(
    "standing, walking, running, jumping, dancing, sitting, kneeling, squatting, lying, leg, foot, "
    "feet, shoes?, boots?, sneakers?, fashion, outfit, dress, suit, athletic, figure"
)
ANIMAL = words(
    "animal, pet, dog, dogs, puppy, puppies, cat, kitten, kitty, horse, pony, ponies, foal, bird, "
    "fish, lion, lioness, tiger, bear, wolf, wolves, fox, deer, rabbit, bunny, bunnies, hare, cow, "
    "cattle, bull, ox, oxen, pig, piglet, sheep, lamb, goat, elephant, giraffe, zebra, monkey, ape, "
    "gorilla, chimpanzee, orangutan, panda, koala, owl, eagle, hawk, falcon, parrot, duck, goose, "
    "geese, swan, chicken, hen, rooster, penguin, dolphin, whale, shark, seal, otter, beaver, "
    "snake, lizard, gecko, iguana, frog, toad, turtle, tortoise, crocodile, alligator, dinosaur, "
    "butterfly, butterflies, bee, insect, beetle, ant, dragonfly, dragonflies, squirrel, mouse, "
    "mice, rat, hamster, guinea pig, raccoon, hedgehog, camel, llama, alpaca, kangaroo, bat, crow, "
    "raven, pigeon, sparrow, robin, hummingbird, flamingo, peacock, leopard, cheetah, jaguar, puma, "
    "cougar, panther, lynx, donkey, mule, moose, elk, reindeer, bison, buffalo, buffaloes, rhino, "
    "rhinoceros, hippo, hippopotamus, sloth, corgi, labrador, retriever, poodle, husky, huskies, "
    "bulldog, terrier, shiba, dragon, unicorn, griffin, gryphon, phoenix, pegasus, creature, "
    "spider, octopus, crab, lobster, jellyfish, snail, scorpion, moth, ladybug, wildlife"
)
TEXT_OBJECTS = words(
    "sign, signs, signboard, signage, poster, billboard, logo, logotype, label, banner, book cover, "
    "album cover, magazine cover, magazine, newspaper, headline, menu, t-?shirt design, speech "
    "bubble, comic strip, storefront, shop front, license plate, neon sign, street sign, "
    "typography, lettering, calligraphy, graffiti, font, caption, title card, meme, infographic, "
    "flyer, greeting card, business card, wordmark, monogram, text, word, words, letter, letters, "
    "quote, slogan, says, saying, reads, written, inscription, inscribed"
)
LANDSCAPE = words(
    "landscape, mountain, mountains, forest, woods, lake, river, ocean, sea, seascape, beach, "
    r"shore, coast, coastline, sky, skies, sunset, sunrise, dawn, dusk, (?<!depth\sof\s)field, "
    "meadow, valley, desert, canyon, waterfall, hill, countryside, nature, island, jungle, "
    "rainforest, glacier, volcano, snowy, cloud, clouds, scenery, vista, horizon, cliff, prairie, "
    "tundra, aurora, northern lights, savanna, savannah, wilderness, fjord, lagoon, reef, "
    "grassland, orchard, vineyard, garden, park, trees, pine, starry sky, night sky, milky way, "
    "harbou?r, pier, marina, bay, outdoors"
)
ARCHITECTURE = words(
    "building, house, architecture, architectural, skyscraper, tower, castle, church, cathedral, "
    "temple, mosque, pagoda, bridge, city, cities, cityscape, street, skyline, interior, room, "
    "kitchen, bedroom, living room, bathroom, office, hallway, corridor, facade, palace, mansion, "
    "cabin, cottage, villa, apartment, library, libraries, museum, lobby, staircase, stairs, ruins, "
    "village, town, downtown, alley, alleyway, plaza, courtyard, lighthouse, windmill, barn, "
    "warehouse, factory, factories, station, cafe, restaurant, shop, storefront, hotel, arch, dome, "
    "column, pillar, window, balcony, rooftop, skyscrapers, metropolis, urban"
)
VEHICLE = words(
    "car, truck, bus, buses, motorcycle, motorbike, bicycle, bike, train, locomotive, tram, subway, "
    r"airplane, aeroplane, plane, aircraft, jet(?![\s-]*black), helicopter, boat, ship, yacht, "
    r"sailboat, vehicle, van(?![\s-]*gogh), jeep, suv, tractor, spaceship, spacecraft, starship, "
    "rocket, race car, racecar, sports car, supercar, sedan, pickup, scooter, taxi, taxis, "
    "ambulance, submarine, traffic, porsche, ferrari, lamborghini, mustang, convertible, limousine, "
    r"(?<!fish\s)tank, canoe, kayak, carriage, wagon, mech, hot rod"
)
FOOD = words(
    "food, dish, dishes, meal, burger, hamburger, pizza, pasta, spaghetti, sushi, cake, dessert, "
    "bread, salad, soup, fruit, apple, banana, strawberry, strawberries, "
    r"cherr(?:y|ies)(?![\s-]*blossom), coffee, latte, cappuccino, espresso, tea, drink, cocktail, "
    "wine, beer, breakfast, brunch, lunch, dinner, steak, noodle, ramen, sandwich, sandwiches, "
    "cookie, chocolate, ice cream, donut, doughnut, pie, cuisine, vegetable, taco, burrito, curry, "
    "curries, cheese, egg, pancake, croissant, cupcake, dumpling, bakery, bakeries, pastry, "
    "pastries, smoothie, juice, barbecue, bbq, grilled, roast, feast, buffet, charcuterie, food "
    "photography, plated, gourmet"
)
PRODUCT = words(
    "product, product shot, product photo, product photography, packshot, bottle, perfume, watch, "
    r"wristwatch, sneaker, handbag, purse, jewelry, jewellery, (?<!boxing\s)ring, necklace, "
    "earrings, headphones, earbuds, smartphone, phone, laptop, packaging, package design, cosmetic, "
    "lipstick, skincare, studio shot, e-commerce, ecommerce, advertisement, advert, commercial, "
    "mockup, catalog, catalogue, gadget, sunglasses"
)

# Subjects: what the prompt shows. Order sets priority when several match (people's defects are the most visible).
SUBJECTS: tuple[Group, ...] = (
    group(
        "face",
        FACE,
        (
            "poorly drawn face, disfigured face, asymmetric eyes, cross-eyed, deformed iris, bad teeth, "
            "distorted face, skin blemishes, plastic skin, extra eyes"
        ),
        core=3,
    ),
    group(
        "people",
        PERSON,
        (
            "bad anatomy, deformed, disfigured, extra limbs, bad proportions, malformed limbs, missing "
            "limbs, long neck, mutated, cloned face, extra heads"
        ),
        core=3,
    ),
    group(
        "hands",
        HANDS,
        (
            "bad hands, extra fingers, missing fingers, fused fingers, deformed hands, poorly drawn hands, "
            "too many fingers, mutated hands"
        ),
        core=3,
        context=HANDS_CONTEXT,
        requires=("people",),
    ),
    group(
        "full_body",
        FULL_BODY,
        (
            "bad proportions, extra legs, extra arms, poorly drawn feet, body out of frame, malformed feet, "
            "cut off feet"
        ),
        core=2,
        context=FULL_BODY_CONTEXT,
        requires=("people",),
    ),
    group(
        "animal",
        ANIMAL,
        (
            "bad anatomy, extra legs, extra limbs, missing legs, extra heads, deformed paws, extra tails, "
            "fused limbs, mutated"
        ),
        core=3,
    ),
    group(
        "text",
        TEXT_OBJECTS + r"|[\"“][^\"”]{1,60}[\"”]",
        (
            "misspelled text, garbled letters, illegible text, gibberish text, bad typography, distorted "
            "letters, blurry text"
        ),
        core=3,
    ),
    group(
        "architecture",
        ARCHITECTURE,
        (
            "distorted perspective, warped lines, crooked walls, bad perspective, floating objects, "
            "impossible geometry, cluttered"
        ),
        core=2,
    ),
    group(
        "vehicle",
        VEHICLE,
        ("deformed wheels, extra wheels, distorted proportions, warped body panels, bad perspective, floating"),
        core=2,
    ),
    group(
        "food",
        FOOD,
        "unappetizing, rotten, moldy, burnt, unnatural colors, artificial looking, messy plating",
        core=2,
    ),
    group(
        "product",
        PRODUCT,
        ("distorted shape, warped, smudges, fingerprints, dust, scratches, cluttered background, uneven lighting"),
        core=2,
    ),
    group(
        "landscape",
        LANDSCAPE,
        (
            "tilted horizon, overexposed sky, oversaturated, washed out, flat lighting, muddy colors, "
            "chromatic aberration"
        ),
        core=2,
    ),
)

PHOTO = words(
    "photo, photos, photograph, photography, photographic, photoreal, photorealistic, photorealism, "
    "realistic, realism, hyperrealistic, hyper-realistic, hyperrealism, lifelike, life-like, real "
    r"life, dslr, raw photo, snapshot, film still, movie still, cinematic still, polaroid, \d\d\d? "
    r"?mm, f/\d+(?:\.\d+)?, canon, nikon, sony a7, leica, hasselblad, fujifilm, kodak, portra, "
    "ektar, ilford, iphone photo, national geographic, street photography, bokeh, long exposure, "
    "shot on, documentary, paparazzi, candid, photojournalism, headshot, selfie"
)
PAINTING = words(
    "painting, paintings, painted, painterly, oil on canvas, oil painting, watercolou?r, acrylic, "
    "gouache, impasto, fresco, tempera, brush ?strokes?, canvas, impressionis[mt], "
    "expressionis[mt], baroque, renaissance painting, old master, van gogh, monet, rembrandt, "
    "klimt, ukiyo-?e, sumi-?e, chinese painting, ink wash"
)
ILLUSTRATION = words(
    "illustration, illustrated, drawing, drawn, digital art, digital painting, concept art, "
    "artwork, vector, vector art, flat design, flat illustration, storybook, children's book, "
    "picture book, comic, comic book, graphic novel, cartoon, cartoonish, toon, clip ?art, sticker, "
    "icon, emoji, caricature, artstation, fantasy art, book illustration, tarot card, mascot, "
    "disney, pixar, looney tunes"
)
ANIME = words(
    "anime, manga, waifu, chibi, studio ghibli, ghibli, makoto shinkai, cel ?shad(?:ed|ing), visual "
    "novel, kawaii, shoujo, shounen, shonen, shojo, isekai, genshin, vtuber, light novel, danbooru"
)
RENDER_3D = words(
    "3d, 3-d, 3d render, render, rendered, rendering, cgi, cg, octane, octane render, unreal "
    "engine, unreal, blender, cinema ?4d, c4d, vray, v-ray, redshift, ray ?trac(?:ed|ing), path "
    r"traced, low[\s-]?poly, voxel, zbrush, sculpt, isometric, claymation, clay render, keyshot, "
    "subsurface scattering, pbr, game asset"
)
PIXEL = words(
    r"pixel art, pixel-art, pixelart, pixelated, pixel, 8[\s-]?bit, 16[\s-]?bit, 32[\s-]?bit, "
    "sprite, sprite sheet, retro game, nes, snes, gameboy, game boy, dithered, dithering"
)
SKETCH = words(
    "sketch, sketches, sketched, sketchy, line art, lineart, line drawing, pencil, charcoal, "
    "graphite, ink drawing, ink sketch, ink illustration, pen and ink, doodle, etching, engraving, "
    "woodcut, linocut, crosshatch(?:ed|ing)?, stippling, blueprint, technical drawing, croquis, "
    "gesture drawing, storyboard"
)
MONO = words(
    "black and white, black-and-white, b&w, b/w, monochrome, monochromatic, grayscale, greyscale, "
    "noir, film noir, sepia, duotone, desaturated, silver gelatin, tintype, daguerreotype, "
    r"charcoal, graphite, (?<!colored\s)(?<!coloured\s)pencil sketch, ink drawing, pen and ink, "
    "sumi-?e, ink wash, etching, engraving, woodcut, linocut, silhouette"
)

# Styles: how the prompt is rendered. The first ``core`` terms are the style conflicts (what a different style would
# bring); the rest are the style's own typical defects.
STYLES: tuple[Group, ...] = (
    group(
        "photo",
        PHOTO,
        (
            "cartoon, anime, painting, illustration, 3d render, cgi, drawing, sketch, overexposed, "
            "underexposed, low contrast, oversaturated, noise"
        ),
        core=5,
    ),
    group(
        "anime",
        ANIME,
        (
            "photorealistic, realistic, photo, 3d, 3d render, extra digit, fewer digits, error, normal "
            "quality, username, lowres"
        ),
        core=4,
    ),
    group(
        "painting",
        PAINTING,
        ("photo, photorealistic, 3d render, cgi, muddy colors, bad art, amateur, beginner, overworked"),
        core=3,
    ),
    group(
        "illustration",
        ILLUSTRATION,
        ("photo, photorealistic, 3d render, bad art, amateur, messy lines, sloppy linework, beginner"),
        core=3,
    ),
    group(
        "render_3d",
        RENDER_3D,
        ("2d, flat, sketch, painting, drawing, low poly, aliasing, jagged edges, bad textures, stretched textures"),
        core=3,
    ),
    group(
        "pixel_art",
        PIXEL,
        (
            "anti-aliasing, smooth gradients, soft edges, photorealistic, 3d render, painting, inconsistent "
            "pixel size, mixed resolution, noisy"
        ),
        core=4,
    ),
    group(
        "sketch",
        SKETCH,
        "photo, photorealistic, 3d render, color, messy lines, smudged, uneven lines, eraser marks",
        core=3,
    ),
    group(
        "monochrome",
        MONO,
        "color cast, color tint, muddy tones, low contrast",
        core=2,
    ),
)

CORE = ("worst quality", "low quality", "blurry", "jpeg artifacts")
MARKS = ("watermark", "signature", "text", "logo")
EXTRAS = tuple(
    split_spec(
        "lowres, deformed, distorted, ugly, bad composition, out of frame, cropped, duplicate, poorly "
        "drawn, monochrome, grainy, artifacts, tiling, oversaturated, bad art"
    )
)

# ------------------------------------------------------------------------------------------------------- video
# The video vocabulary: added only for video (``BuiltinGenerator(kind="video")``), never to an image negative. Each
# term says why a video negative names it and where video users pass it; the keys below name the sources. The quoted
# words are those of the source (the diffusers files are those of diffusers 0.42).
VIDEO_SOURCES: dict[str, str] = {
    "wan": (
        "Wan 2.1 and 2.2's default negative, `sample_neg_prompt` in wan/configs/shared_config.py of Wan-Video/Wan2.1 "
        "and Wan-Video/Wan2.2 (in Chinese), in English in the examples of diffusers' WanPipeline and "
        "WanImageToVideoPipeline: 'Bright tones, overexposed, static, blurred details, subtitles, ..., still "
        "picture, messy background, three legs, many people in the background, walking backwards'"
    ),
    "ltx": (
        "LTX-Video's negative in the examples of diffusers' LTXPipeline and LTXImageToVideoPipeline (from "
        "Lightricks' model card): 'worst quality, inconsistent motion, blurry, jittery, distorted'"
    ),
    "ltx2": (
        "LTX-2's DEFAULT_NEGATIVE_PROMPT, diffusers pipelines/ltx2/utils.py (from Lightricks/LTX-2 "
        "ltx_pipelines/utils/constants.py): '... flickering, motion blur, ... camera shake, ... inconsistent "
        "lighting direction, ... jittery movement, ... unnatural transitions, inconsistent framing, ...'; "
        "LTX2ConditionPipeline's example adds 'static'"
    ),
    "cosmos": (
        "Cosmos' DEFAULT_NEGATIVE_PROMPT, which diffusers' CosmosTextToWorldPipeline fills when no negative is given: "
        "'... static with no motion, motion blur, ..., shaky footage, ..., choppy sequences, jerky movements, low "
        "frame rate, artifacting, ..., unnatural transitions, ..., jump cuts, visual noise, and flickering'"
    ),
    "sana_video": (
        "the negative of diffusers' SanaVideoPipeline example: '... heavy motion blur, sudden disappearance, jump "
        "cuts, jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal "
        "artifacts, jitter, and ghosting effects'"
    ),
    "kandinsky5": (
        "Kandinsky 5's default negative in diffusers' Kandinsky5T2VPipeline: 'Static, 2D cartoon, cartoon, 2d "
        "animation, paintings, images, worst quality, low quality, ugly, deformed, walking backwards'"
    ),
    "i2vgen": (
        "the negative of diffusers' I2VGenXLPipeline example: 'Distorted, discontinuous, Ugly, blurry, low "
        "resolution, motionless, static, ...'"
    ),
    "wan_slow": (
        "the slow motion of Wan 2.2 with few-step LoRAs, a known failure (ModelTC/LightX2V-Wan2.2-Lightning issue 13, "
        "'On the Slow Motion Issue of Wan2.2-Lightning')"
    ),
    "community": (
        "video negatives shared for Wan, LTX and Kling workflows ('flickering, morphing', 'morphing face', 'identity "
        "drift', 'sliding feet', 'stuttering', 'frozen motion', 'repeated frames'); no pipeline ships it as a default"
    ),
    "negopt": "negopt's own, written in the same style after the failure the reason names",
}

VIDEO_TERMS: tuple[SourcedTerm, ...] = (
    # Core: every video negative, right after the universal quality terms.
    SourcedTerm(
        "static",
        "core",
        "the clip barely moves: the commonest failure of text-to-video",
        ("wan", "kandinsky5", "ltx2", "i2vgen"),
    ),
    SourcedTerm("still picture", "core", "one frame held for the whole clip", ("wan",)),
    SourcedTerm("flickering", "core", "brightness and texture change from frame to frame", ("cosmos", "ltx2")),
    SourcedTerm("jittery", "core", "small random shifts between frames", ("ltx", "ltx2", "sana_video")),
    SourcedTerm(
        "inconsistent motion", "core", "motion that stops, starts or changes direction for no reason", ("ltx",)
    ),
    SourcedTerm("morphing", "core", "bodies and objects change shape over time", ("community",)),
    # Subjects: added when the prompt shows the subject, after that subject's own top terms.
    SourcedTerm(
        "inconsistent face",
        "face",
        "the face changes from frame to frame (identity drift)",
        ("sana_video", "community"),
    ),
    SourcedTerm("morphing face", "face", "features slide and reshape as the face moves", ("community",)),
    SourcedTerm(
        "walking backwards", "people", "legs step one way while the body moves the other", ("wan", "kandinsky5")
    ),
    SourcedTerm("morphing hands", "hands", "fingers merge, split and change count as hands move", ("community",)),
    SourcedTerm("sliding feet", "full_body", "feet glide over the ground instead of stepping", ("community",)),
    SourcedTerm(
        "walking backwards", "animal", "legs step one way while the body moves the other", ("wan", "kandinsky5")
    ),
    SourcedTerm("flickering text", "text", "letters change from frame to frame", ("negopt",)),
    SourcedTerm(
        "driving backwards",
        "vehicle",
        "vehicles move against the way they face, as Wan's people walk backwards",
        ("negopt",),
    ),
    # Extras: after the subject and style terms, before the general image defects.
    SourcedTerm("choppy motion", "extra", "motion in steps rather than a flow", ("cosmos",)),
    SourcedTerm("jerky movements", "extra", "sudden starts and stops", ("cosmos", "sana_video")),
    SourcedTerm("stuttering", "extra", "motion that hesitates and repeats", ("community",)),
    SourcedTerm("low frame rate", "extra", "too few distinct frames for smooth motion", ("cosmos",)),
    SourcedTerm("frozen frames", "extra", "frames repeat and the motion stalls mid-clip", ("community",)),
    SourcedTerm("motion blur", "extra", "smeared moving parts", ("cosmos", "ltx2", "sana_video")),
    SourcedTerm("temporal artifacts", "extra", "artifacts that come and go between frames", ("sana_video",)),
    SourcedTerm("ghosting", "extra", "faint copies trailing behind moving things", ("sana_video",)),
    SourcedTerm("camera shake", "extra", "an unsteady camera nobody asked for", ("ltx2",)),
    SourcedTerm("shaky footage", "extra", "an unsteady camera nobody asked for", ("cosmos",)),
    SourcedTerm("jump cuts", "extra", "the scene skips within one shot", ("cosmos", "sana_video")),
    SourcedTerm("unnatural transitions", "extra", "one scene melts into another", ("cosmos", "ltx2")),
    SourcedTerm("sudden disappearance", "extra", "things vanish between frames", ("sana_video",)),
    SourcedTerm("inconsistent lighting", "extra", "the light changes direction or strength for no reason", ("ltx2",)),
    SourcedTerm("slow motion", "extra", "motion slower than asked", ("wan_slow",)),
    SourcedTerm("subtitles", "extra", "burnt-in subtitles, learned from subtitled footage", ("wan",)),
)
VIDEO_CORE: tuple[str, ...] = tuple(t.term for t in VIDEO_TERMS if t.place == "core")
VIDEO_SUBJECT_TERMS: dict[str, tuple[str, ...]] = {
    g.name: tuple(t.term for t in VIDEO_TERMS if t.place == g.name) for g in SUBJECTS
}
VIDEO_EXTRAS: tuple[str, ...] = tuple(t.term for t in VIDEO_TERMS if t.place == "extra")


# CLIP's pre-tokenizer splits text into letter runs, single digits and runs of other symbols. These are the CLIP BPE
# token counts of the letter runs of our vocabulary, measured with scripts/clip_word_counts.py (the CLIP tokenizer of
# Stable Diffusion); a test checks that the table covers the vocabulary.
CLIP_WORD_TOKENS = word_table(
    {
        1: (
            "amateur anatomy anime anti arms art artifacts artificial background backwards bad beginner blur "
            "blurry body burnt camera cartoon cast cgi chromatic color colors composition contrast crooked "
            "cropped cross cut cuts d digit digits disappearance drawing drawn driving dust edges error extra "
            "eyed eyes face feet fewer fingers flat floating footage frame frames frozen fused geometry hands "
            "heads horizon illustration impossible iris jerky jump legs letters lighting limbs lines logo "
            "long looking low many marks messy missing mixed monochrome motion movements muddy neck noise "
            "noisy normal objects of off out painting panels paws perspective photo picture pixel plastic "
            "plating poly poorly proportions quality rate realistic render resolution rotten scratches shake "
            "shape signature size sketch skin sky sliding sloppy slow smooth soft static still stretched "
            "subtitles sudden tails teeth temporal text textures tint tones too transitions typography ugly "
            "uneven username walking walls warped washed wheels worst "
        ),
        2: (
            "aberration aliasing asymmetric choppy cloned cluttered deformed disfigured distorted duplicate "
            "eraser fingerprints flickering garbled ghosting grainy inconsistent jagged jittery jpeg linework "
            "lowres malformed misspelled moldy morphing mutated overworked photorealistic shaky smudged "
            "smudges tiling tilted unnatural watermark "
        ),
        3: ("blemishes gibberish gradients illegible overexposed oversaturated stuttering unappetizing underexposed "),
    }
)


CONCEPTS: tuple[Concept, ...] = (
    concept(
        "blur",
        words(
            "blur, blurry, blurred, blurring, motion blur, long exposure, long-exposure, bokeh, out of "
            "focus, out-of-focus, soft focus, defocused, unfocused, depth of field, dof, tilt-shift, tilt "
            "shift, light trails, light painting, dreamy, hazy, haze, fuzzy, soft-focus, gaussian, smeared, "
            "ghosting, vhs, cctv, lomo(?:graphy)?"
        ),
        r"blur|out of focus|soft focus|bokeh|depth of field|\bfuzzy\b|smudged|soft edges",
    ),
    concept(
        "grain",
        words(
            "grain, grainy, film grain, noise, noisy, analog, analogue, film photo, film photograph, film "
            "photography, film still, on film, 35 ?mm film, 35 ?mm, kodak, portra, ektar, ilford, fujifilm, "
            "cinestill, polaroid, lomo(?:graphy)?, disposable camera, vintage photo, old photo, vhs, cctv, "
            "security camera, webcam, found footage, static, high iso, dithered, dithering, stippling, "
            "risograph, halftone"
        ),
        r"grain|\bnois[ey]\b|\bnoise\b|dither",
    ),
    concept(
        "low_quality",
        words(
            "low quality, low-quality, bad quality, worst quality, lowres, low res, low resolution, lo-fi, "
            "lofi, vhs, cctv, security camera, webcam, found footage, jpeg, jpg, compressed, compression "
            r"artifacts, deep[\s-]?fried, glitch, glitchy, glitch art, datamosh(?:ing)?, corrupted, early "
            "internet, old internet, ms paint"
        ),
        r"^(?:worst quality|low quality|normal quality|bad quality|lowres|low resolution|jpeg artifacts|artifacts"
        r"|compression artifacts|error|noise|noisy|grainy|pixelated)$",
    ),
    concept(
        "pixel",
        PIXEL + "|" + words(r"low[\s-]?res, lowres, low resolution, retro video game, arcade"),
        exact("pixelated, pixel art, lowres, low resolution, 8-bit, jagged edges, aliasing"),
    ),
    concept(
        "monochrome",
        MONO,
        exact(
            "monochrome, black and white, grayscale, greyscale, desaturated, b&w, colorless, oversaturated, "
            "unnatural colors, muddy colors, color, washed out"
        ),
    ),
    concept(
        "muted",
        words(
            "desaturated, muted, muted colou?rs, pastel, pastels, washed out, washed-out, faded, bleached, "
            "low saturation, dull, matte, earth tones, vintage, retro"
        ),
        exact("desaturated, washed out, dull colors, muted colors, faded, low saturation"),
    ),
    concept(
        "saturated",
        words(
            "saturated, oversaturated, over-saturated, hypersaturated, psychedelic, neon, vivid, vibrant, "
            "fluorescent, day-?glo, trippy, technicolor, pop art"
        ),
        exact("oversaturated, saturated, unnatural colors, garish"),
    ),
    concept(
        "dark",
        words(
            r"dark, darkness, night, nighttime, night time, midnight, low[\s-]?light, dimly lit, dim, moody, "
            "noir, chiaroscuro, shadow, shadowy, silhouette, silhouetted, candlelit, candle light, "
            r"candlelight, moonlit, moonlight, low[\s-]?key, gothic, unlit, starry, night sky, "
            "astrophotography, milky way, underexposed, blackout, cave, dungeon"
        ),
        exact("underexposed, too dark, dark, dim, low light, low contrast, flat lighting"),
    ),
    concept(
        "bright",
        words(
            r"overexposed, over-exposed, high[\s-]?key, blown out, blown-out, bloom, glowing, glow, bright "
            "white, white background, ethereal, sun flare, lens flare, harsh sunlight, backlit, backlight, "
            "light leak, light leaks"
        ),
        exact("overexposed, overexposed sky, too bright, washed out, lens flare, blown highlights"),
    ),
    concept(
        "low_contrast",
        words(
            "low contrast, low-contrast, fog, foggy, mist, misty, haze, hazy, smoke, smoky, smokey, "
            "atmospheric, overcast, dusty, murky, ethereal, dreamy, faded, soft light"
        ),
        exact("low contrast, hazy, foggy, washed out, flat lighting"),
    ),
    concept(
        "text",
        words(
            "text, word, words, letter, letters, lettering, caption, captioned, writing, written, "
            "typography, typographic, font, calligraphy, title, headline, quote, slogan, says, saying, that "
            "reads, inscription, alphabet, handwriting, handwritten, subtitles?, watermarked"
        ),
        exact(
            "text, words, letters, lettering, writing, caption, captions, typography, font, username, artist name, "
            "subtitles"
        ),
    ),
    concept(
        "text_object",
        TEXT_OBJECTS + r"|[\"“][^\"”]{1,60}[\"”]",
        exact("text, words, letters, lettering, writing, caption, captions, typography, font"),
        negatable=False,
    ),
    concept(
        "logo",
        words(
            "logo, logotype, emblem, brand, branding, badge, crest, insignia, wordmark, monogram, "
            "trademark, coat of arms, mascot"
        ),
        exact("logo, logos, brand, branding"),
        negatable=False,
    ),
    concept(
        "signature",
        words("signature, signed, autograph, autographed, signing"),
        exact("signature, artist name, username"),
    ),
    concept(
        "watermark",
        words("watermark, watermarked, stamp, stamped, postage stamp"),
        exact("watermark"),
    ),
    concept(
        "cartoon",
        words(
            "cartoon, cartoons, cartoonish, cartoony, toon, comic, comics, comic book, caricature, chibi, "
            "disney, pixar, looney tunes, animated, animation, mascot, kawaii, anime"
        ),
        exact("cartoon, cartoonish, toon, comic, caricature"),
    ),
    concept("anime", ANIME, exact("anime, manga, 2d, cel shading, cel shaded")),
    concept(
        "painting",
        PAINTING,
        exact(
            "painting, oil painting, watercolor, watercolour, brush strokes, brushstrokes, painterly, "
            "canvas, canvas texture, digital painting"
        ),
    ),
    concept(
        "illustration",
        ILLUSTRATION + "|" + SKETCH,
        exact(
            "illustration, drawing, digital art, concept art, vector art, clipart, clip art, 2d, flat, "
            "comic, doodle, artwork, sketch, line art, lineart"
        ),
    ),
    concept(
        "sketch",
        SKETCH + "|" + words("rough, unfinished, wip, work in progress, loose, gestural, scribble"),
        exact(
            "sketch, unfinished, rough, messy lines, sloppy linework, uneven lines, eraser marks, line art, "
            "lineart, drawing, smudged, color"
        ),
    ),
    concept(
        "photo",
        PHOTO,
        exact("photo, photograph, photography, photorealistic, realistic, realism, hyperrealistic, real life"),
    ),
    concept(
        "render_3d",
        RENDER_3D,
        exact("3d, 3d render, render, cgi, cg, octane render, unreal engine, blender"),
    ),
    concept(
        "low_poly",
        words(r"low[\s-]?poly, polygonal, faceted, ps1, psx, n64"),
        exact("low poly"),
    ),
    concept(
        "flat",
        words(
            "flat, flat design, flat colou?rs?, flat shading, 2d, minimalist, minimalism, vector, paper "
            "cut, papercut, silhouette, cel ?shad(?:ed|ing), limited palette"
        ),
        exact("2d, flat, flat shading, flat lighting, flat colors, smooth gradients"),
    ),
    concept(
        "framing",
        words(
            "close-?up, extreme close-?up, closeup, macro, cropped, crop, cut off, partial, headshot, bust, "
            "detail shot, out of frame, half body, upper body, waist up, portrait crop"
        ),
        exact("cropped, cut off, out of frame, body out of frame, cut off feet, cropped head"),
    ),
    concept(
        "repetition",
        words(
            "twins?, triplets, clones?, cloned, duplicate, duplicates, duplicated, pattern, patterns, "
            "seamless, tiled, tileable, tiling, tile, wallpaper, texture, repeated, repeating, mirror, "
            "mirrored, reflection, reflections, symmetr(?:y|ical), kaleidoscope, collage, grid, army, "
            "swarm, identical"
        ),
        exact("duplicate, cloned face, tiling, mirrored"),
    ),
    concept(
        "surreal",
        words(
            "surreal, surrealism, surrealist, dali, abstract, distorted, distortion, warped, warping, "
            "melting, melted, cubism, cubist, escher, impossible, glitch, glitchy, psychedelic, trippy, "
            "dreamlike, liquid, twisted, fractal, non-euclidean, picasso, deformed, deformation, stretched, "
            "morphing, optical illusion, datamosh(?:ing)?"
        ),
        exact(
            "distorted, warped, deformed, bad proportions, gross proportions, distorted perspective, warped "
            "lines, impossible geometry, distorted proportions, distorted shape, warped body panels, "
            "distorted face, distorted letters, melting"
        ),
    ),
    concept(
        "lens",
        words(
            r"fish-?eye, fisheye, wide[\s-]?angle, ultra[\s-]?wide, 360, panoram(?:a|ic), equirectangular, "
            "anamorphic, dutch angle, tilted, worm's eye, bird's eye"
        ),
        exact(
            "distorted perspective, lens distortion, chromatic aberration, tilted horizon, warped lines, "
            "bad perspective"
        ),
    ),
    concept(
        "ugly",
        words(
            "ugly, ugliest, grotesque, hideous, gross, disgusting, monster, monstrous, zombie, horror, "
            "horrific, creepy, gore, gory, goblin, troll, orc, ghoul, demon, undead, corpse, rotting, "
            "decay, decaying, scary, eldritch, lovecraftian"
        ),
        exact(
            "ugly, gross, grotesque, hideous, disgusting, gross proportions, disfigured, disfigured face, "
            "rotten, moldy"
        ),
    ),
    concept(
        "many_parts",
        r"\b(?:two|three|four|five|six|seven|eight|nine|ten|multiple|many|extra|\d+)[\s-]+"
        r"(?:heads?|headed|faces?|faced|tails?|tailed)\b"
        r"|\b(?:three|four|five|six|seven|eight|nine|ten|multiple|many|extra|\d+)[\s-]+"
        r"(?:arms?|armed|legs?|legged|eyes?|eyed|limbs?|limbed|hands?|handed|wings?|winged|fingers?|fingered)\b"
        r"|"
        + words(
            "mutant, mutants, mutated, mutation, monster, creature, eldritch, tentacle, tentacled, octopus, "
            "octopi, squid, kraken, spider, tarantula, centipede, millipede, hydra, cerberus, cyclops, "
            "conjoined, chimera, centaur, naga, multi-?armed, multi-?headed, many-?armed, many-?legged, "
            "shiva, durga, asura, hecatoncheires"
        ),
        r"^(?:extra|too many|multiple) (?:limbs?|arms?|legs?|heads?|eyes?|tails?|fingers?|digits?|hands?)$"
        r"|^(?:mutated|mutant|mutation|mutated hands|malformed limbs|fused limbs|fused fingers|fewer digits"
        r"|extra digit|cloned face|deformed)$",
    ),
    concept(
        "missing_parts",
        words(
            "amputee, one-?armed, one-?legged, armless, legless, missing (?:an? )?(?:arm|leg|hand|eye), "
            "prosthetic, prosthesis, wheelchair, eyepatch, one-?eyed, cyclops, venus de milo, statue, bust, "
            "torso, headless"
        ),
        r"^(?:missing|fewer) (?:limbs?|arms?|legs?|fingers?|digits?|hands?|eyes?)$|^(?:fewer digits|cropped head)$",
    ),
    concept(
        "skin_detail",
        words(
            "freckles?, freckled, acne, blemish(?:es)?, scars?, scarred, pimples?, pockmarks?, weathered, "
            "wrinkles?, wrinkled, wrinkly, elderly, aged, old, tattoos?, tattooed, pores, skin texture, "
            "moles?, birthmark, vitiligo, sunburn"
        ),
        exact("skin blemishes, skin spots, acne, bad skin, plastic skin, airbrushed"),
    ),
    concept(
        "weathered",
        words(
            "dust, dusty, scratch(?:ed|es|y)?, worn, weathered, grunge, grungy, rust, rusty, rusted, "
            "distressed, antique, patina, smudged?, smudges, dirty, dirt, grime, grimy, abandoned, decay, "
            "decaying, derelict, post-apocalyptic, fingerprints?"
        ),
        exact("dust, scratches, smudges, fingerprints, dirty, stains, smudged"),
    ),
    concept(
        "clutter",
        words(
            "clutter, cluttered, messy, busy, crowded, chaotic, chaos, hoard(?:er|ing)?, maximalis[mt], "
            "packed, overflowing, jumble, untidy, disorganized, junk, junkyard, flea market, bazaar"
        ),
        exact("cluttered, cluttered background, messy, busy background, messy plating"),
    ),
    concept(
        "floating",
        words(
            "floating, levitating, levitation, flying, hovering, suspended, zero gravity, weightless, in "
            "mid-?air, midair, airborne, space"
        ),
        exact("floating, floating objects, floating vehicle, floating limbs"),
    ),
    concept(
        "food_decay",
        words(
            "rotten, rotting, moldy, mouldy, mold, mould, spoiled, burnt, burned, charred, decay, decaying, "
            "leftovers, compost"
        ),
        exact("rotten, moldy, burnt, unappetizing"),
    ),
    concept(
        "anti_aliasing",
        words("anti-?alias(?:ed|ing)?, smooth, smooth gradients?, gradients?, soft"),
        exact("anti-aliasing, smooth gradients, soft edges"),
    ),
    concept(
        "amateur",
        words(
            "amateur, amateurish, beginner, child's drawing, childlike, child-like, naive art, naive, "
            "outsider art, crayon, kid's drawing, kids drawing, ms paint, crude, bad art, badly drawn, "
            "poorly drawn, low effort, scribble, scribbles"
        ),
        exact("amateur, beginner, bad art, poorly drawn, messy lines, sloppy linework, uneven lines"),
    ),
    concept(
        "color",
        words(
            "colou?r, colou?red, colou?rful, colou?rs, colou?rized, watercolou?r, polychrom(?:e|atic), "
            "rainbow, hues?, tinted, tint, vibrant, vivid, multicolou?red, technicolor, splash of colou?r"
        ),
        exact("color, colors, colour, colour cast, color cast, color tint"),
    ),
    concept(
        "plastic",
        words(
            "plastic, toy, toys, doll, dolls, figurine, lego, action figure, barbie, vinyl, funko, "
            "mannequin, porcelain, wax, waxwork, airbrushed, glossy skin"
        ),
        exact("plastic skin, plastic, doll, airbrushed, artificial looking, 3d render, cgi"),
    ),
    concept(
        "perspective",
        words(
            "isometric, orthographic, forced perspective, tilted, crooked, leaning, slanted, askew, wonky, "
            "lopsided, asymmetric, asymmetrical"
        ),
        exact(
            "crooked walls, tilted horizon, bad perspective, distorted perspective, asymmetric eyes, asymmetric wheels"
        ),
    ),
)


# What a video prompt can ask for that a video term contradicts. Searched only for video (and for a user's own term
# that one of them contradicts), so they cost an image prompt nothing. As for the image concepts, a doubtful phrase
# counts as asking: a term left out costs less than a negative that fights the prompt.
VIDEO_CONCEPTS: tuple[Concept, ...] = (
    concept(
        "stillness",
        words(
            "still, stillness, static, frozen, freeze, freezes, freezing, freeze-?frame, motionless, unmoving, "
            "immobile, stationary, cinemagraph, tableau, paused, mannequin challenge, locked-?off"
        )
        # "no movement", "without moving", "doesn't move": a negated motion asks for stillness.
        + r"|\b(?:no|not|without|zero|never|doesn't|does\s+not|don't|do\s+not)\s+(?:\w+\s+)?"
        r"(?:motion|movement|moving|move|moves|animation|animated)\b",
        exact("static, still picture, frozen frames"),
        negatable=False,
    ),
    concept(
        "flicker",
        words(
            "flicker, flickers, flickering, flickery, strobe, strobes, strobing, stroboscopic, blink, blinks, "
            "blinking, flash, flashes, flashing, twinkle, twinkles, twinkling, sparkle, sparkles, sparkling, glitter, "
            "glittering, shimmer, shimmers, shimmering, lightning, thunderstorm, candle, candles, candlelit, "
            "candlelight, fire, flame, flames, campfire, bonfire, fireplace, firelight, torchlight, fireworks, disco, "
            "rave, nightclub, club lights, concert lights, police lights, siren, emergency lights, old film, silent "
            "film, film projector, projector, crt, tv screen, television screen"
        ),
        r"flicker",
    ),
    concept(
        "shake",
        words(
            "shake, shakes, shaking, shaky, shaky cam, handheld, hand-held, found footage, earthquake, tremor, "
            "trembling, trembles, tremble, vibrating, vibrates, vibration, quake, turbulence, rumble, rumbling, "
            "bodycam, body cam, body camera, gopro, helmet cam, action cam, dashcam, dash cam, jitter, jittery, "
            "jittering, bumpy, off-road, explosion, explosions, impact, crash, crashes, crashing"
        ),
        exact("camera shake, shaky footage, jittery"),
    ),
    concept(
        "choppy",
        words(
            "stop motion, stop-motion, stopmotion, claymation, choppy, stutter, stutters, stuttering, jerky, jerkily, "
            "low frame rate, low framerate, low fps, flipbook, flip book, frame by frame, gif, robot dance, robotic "
            "dance, popping and locking, pixilation, puppet, marionette, animatronic, staccato, cctv, security "
            "camera, surveillance, webcam"
        )
        + r"|\b(?:[1-9]|1[0-5])\s?fps\b",
        exact(
            "choppy motion, stuttering, jerky movements, low frame rate, frozen frames, jittery, inconsistent motion"
        ),
    ),
    concept(
        "morph",
        words(
            "morph, morphs, morphing, morphed, metamorphosis, metamorphoses, metamorphose, transform, transforms, "
            "transforming, transformed, transformation, transformer, transformers, shapeshift, shapeshifts, "
            "shapeshifting, shapeshifter, shape-shifting, shape-shifter, turns into, turning into, turn into, changes "
            "into, changing into, change into, becomes, becoming, evolves into, evolving into, melt, melts, melting, "
            "liquid, liquify, fluid simulation, blob, slime, mutate, mutates, mutating, mutation, werewolf, grow, "
            "grows, growing, bloom, blooms, blooming, blossoming, unfolding, inflate, inflates, inflating, deflating, "
            "shrink, shrinks, shrinking, squash and stretch, ferrofluid, psychedelic, trippy, kaleidoscope, "
            "kaleidoscopic, fractal, surreal, surrealism, dreamlike, abstract, aging, ageing, ages, age progression, "
            "face swap, deepfake, disguise"
        ),
        r"morph|^inconsistent face$",
    ),
    concept(
        "reverse",
        words(
            "backwards?, backward, reverse, reversed, reverses, reversing, in reverse, rewind, rewinds, rewinding, "
            "rewound, moonwalk, moonwalks, moonwalking, retreat, retreats, retreating, backpedal, backpedals, "
            "backpedaling, backpedalling, back up, backs up, backing up"
        ),
        r"backwards$",
    ),
    concept(
        "time_lapse",
        words(
            "time-?lapse, timelapse, time lapse, hyper-?lapse, hyperlapse, sped up, speed up, sped-up, fast forward, "
            "fast-forward, fast forwarded, fast motion, accelerated, day to night, night to day, dawn to dusk, "
            "sunrise to sunset, sunset to night, over the course of, seasons change, seasons changing, changing "
            "seasons, four seasons"
        ),
        exact("inconsistent lighting, unnatural transitions, sudden disappearance, ghosting, motion blur, jump cuts"),
    ),
    concept(
        "slow_motion",
        words(
            "slow motion, slow-motion, slowmo, slow-mo, slo-mo, slomo, bullet time, super slow, high speed camera, "
            "high-speed camera, high speed footage, phantom camera, high frame rate, slow, slowly, slowed, slowed "
            "down, leisurely, languid, lazily, drifting"
        )
        + r"|\b\d{3,4}\s?fps\b",
        exact("slow motion"),
    ),
    concept(
        "speed",
        words(
            "fast, faster, fastest, speeding, speed, high speed, high-speed, racing, race, races, zoom, zooms, "
            "zooming, whizzing, whooshing, rushing, dashing, sprinting, sprint, sprints, speed lines, whip pan, "
            "whip-pan, swish pan, crash zoom, spinning, spin, spins, whirling, twirling"
        ),
        exact("motion blur, ghosting"),
    ),
    concept(
        "cuts",
        words(
            "jump cut, jump cuts, jump-cut, montage, cuts, cut to, cutting to, cutting between, cuts between, "
            "multi-?shot, multiple shots, several shots, sequence of shots, shot sequence, scene change, scene "
            "changes, scene transition, transition, transitions, transitioning, split screen, split-screen, music "
            "video, trailer, teaser, edit, edited, editing, compilation, slideshow, slide show, crossfade, "
            "cross-fade, dissolve, dissolves, wipe, flashback, flash forward, storyboard"
        ),
        exact("jump cuts, unnatural transitions"),
    ),
    concept(
        "vanish",
        words(
            "disappear, disappears, disappearing, disappearance, vanish, vanishes, vanishing, vanished, fade away, "
            "fades away, fading away, fade out, fades out, fading out, fade in, fades in, teleport, teleports, "
            "teleporting, teleportation, appear, appears, appearing, materialize, materializes, materializing, "
            "dematerialize, magic trick, magician, illusionist, poof, evaporate, evaporates, evaporating, dissolve, "
            "dissolves, dissolving, pop, pops, popping, burst, bursts, bursting, invisible, invisibility"
        ),
        exact("sudden disappearance"),
    ),
    concept(
        "ghost",
        words(
            "ghost, ghosts, ghostly, ghosting, spirit, spirits, apparition, phantom, spectre, specter, spectral, "
            "translucent, transparent, double exposure, multiple exposure, afterimage, after-image, echo, echoes, "
            "light trails, motion trails, trails of light, streaks, long exposure, smear, smeared, smearing, onion "
            "skin, onion skinning"
        ),
        exact("ghosting"),
    ),
    concept(
        "glitch",
        words(
            "glitch, glitches, glitchy, glitching, glitch art, datamosh, datamoshing, databending, corrupted, "
            "corruption, vhs, analog horror, tv static, white noise, signal loss, no signal, interference, "
            "scan ?lines?, crt, bad signal, broken screen, error screen, pixel sorting, hologram, holograms, "
            "holographic"
        ),
        r"temporal artifacts|flicker|jitter|morph|ghosting|stutter|choppy|frozen frames|jerky|inconsistent motion",
    ),
    concept(
        "changing_light",
        words(
            "changing light, changing lights, light changes, lighting changes, shifting light, shifting lights, "
            "shifting shadows, moving shadows, lights turn on, lights turning on, lights go out, lights going out, "
            "lights come on, light switch, power outage, blackout, lightning, thunderstorm, strobe, strobing, disco, "
            "disco ball, rave, nightclub, concert, stage lights, spotlight, spotlights, searchlight, police lights, "
            "emergency lights, siren, lighthouse, headlights, passing cars, clouds passing, passing clouds, dappled, "
            "sun breaking through, sun comes out, candle, candlelit, fire, firelight, flames, campfire, bonfire, "
            "fireplace, fireworks, aurora, northern lights"
        ),
        exact("inconsistent lighting"),
    ),
)
